//! What mail clients write around a reply, by language and client.
//!
//! Data for [`super::reply`]: the verbs of "On …, X wrote:" attributions,
//! the header names of Outlook-style quote blocks, "Begin forwarded
//! message" intros, and mobile/app footers ("Sent from my iPhone"), for the
//! mail-UI languages most used (English, Chinese, Spanish, German, French,
//! Portuguese, Japanese, Russian, Italian, Korean, Dutch, Polish, Turkish,
//! Swedish, Danish/Norwegian, Finnish, Czech, Hungarian, Romanian, Greek,
//! Arabic, Hebrew, Ukrainian, Indonesian, Vietnamese, Hindi, Thai) and the
//! clients people use (Gmail web/mobile, Outlook desktop/web/mobile, Apple
//! Mail, Thunderbird, Yahoo, Proton, K-9/FairEmail, Samsung Email).
//! Written from the clients' own localized strings; each entry is a regex
//! fragment, matched case-insensitively.

/// Verbs (and verb phrases) of attribution lines: "X wrote:", "X schrieb:",
/// "X a écrit :", "X 写道：", "X님이 작성:".
pub const WROTE: &[&str] = &[
    "wrote",
    "writes",
    "said",
    "says", // en
    "schrieb",
    "geschrieben",
    "schreibt", // de
    "a écrit",
    "a ecrit",
    "écrit", // fr
    "escribió",
    "escribio",
    "escribe", // es
    "escreveu",
    "escreve", // pt
    "ha scritto",
    "scrisse", // it
    "schreef",
    "het volgende geschreven", // nl
    r"napisał\(a\)",
    "napisał",
    "napisała",
    "pisze", // pl
    "написал",
    r"написал\(а\)",
    "написала",
    "пишет", // ru
    "написав",
    r"написав\(ла\)",
    "пише", // uk
    "şunu yazdı",
    "yazdı",     // tr
    "kirjoitti", // fi
    "skrev",     // sv, da, no
    r"napsal\(a\)",
    "napsal",
    "napsala", // cs
    "ezt írta",
    "írta",    // hu
    "a scris", // ro
    "έγραψε",  // el
    "كتب",     // ar
    "כתב",
    r"כתב\(ה\)", // he
    "menulis",   // id
    "đã viết",   // vi
    "ने लिखा",    // hi
    "เขียนว่า",    // th
    "写道",
    "寫道",
    "写了", // zh
    "のメール",
    "のメッセージ",
    "は書きました",
    "さんは書きました", // ja
    "작성",
    "님이 작성",
    "님이 쓴 글", // ko
    "написа",     // bg
    "je napisal",
    "napisao",
    "napisala je", // sl, hr
    "parašė",
    "rakstīja",
    "kirjutas", // lt, lv, et
];

/// Words that open an attribution ("On …", "Am …", "Le …"), for joining
/// one that a client wrapped over several lines.
pub const OPENERS: &[&str] = &[
    "on ",
    "at ",
    "am ",
    "le ",
    "op ",
    "el ",
    "em ",
    "il ",
    "dnia ",
    "w dniu ",
    "dne ",
    "den ",
    "pe ",
    "στις ",
    "في ",
    "בתאריך ",
    "pada ",
    "vào ",
    "เมื่อ ",
    "在 ",
    "于 ",
];

/// Intros of forwarded or embedded messages without dashes (Apple Mail).
pub const FORWARD_INTROS: &[&str] = &[
    "begin forwarded message",
    "anfang der weitergeleiteten nachricht",
    "début du message réexpédié",
    "début du message transféré",
    "inicio del mensaje reenviado",
    "comienzo del mensaje reenviado",
    "inizio messaggio inoltrato",
    "início da mensagem reencaminhada",
    "início da mensagem encaminhada",
    "begin doorgestuurd bericht",
    "doorgestuurd bericht",
    "początek przekazywanej wiadomości",
    "начало переадресованного сообщения",
    "iletilen ileti başlangıcı",
    "välitetty viesti alkaa",
    "vidarebefordrat meddelande",
    "videresendt meddelelse",
    "videresendt melding",
    "začátek přeposlané zprávy",
    "továbbított üzenet kezdete",
    "転送されたメッセージ",
    "以下为转发的邮件",
    "转发的邮件",
    "전달된 메시지",
    "έναρξη προωθημένου μηνύματος",
    "بداية الرسالة المُعاد توجيهها",
    "תחילת הודעה שהועברה",
    "pesan yang diteruskan",
    "bắt đầu thư đã chuyển tiếp",
];

/// Outlook-style header names that carry a date (`Sent:`, `Gesendet:`).
pub const DATE_HEADERS: &[&str] = &[
    "sent",
    "date",
    "datum",
    "data",
    "fecha",
    "le",
    "gesendet",
    "envoyé",
    "enviado",
    "enviada em",
    "enviado el",
    "enviado em",
    "inviato",
    "verzonden",
    "wysłano",
    "wysłany",
    "отправлено",
    "дата",
    "gönderildi",
    "gönderilme tarihi",
    "tarih",
    "lähetetty",
    "päivämäärä",
    "skickat",
    "sendt",
    "odesláno",
    "elküldve",
    "dátum",
    "trimis",
    "στάλθηκε",
    "ημερομηνία",
    "تاريخ الإرسال",
    "التاريخ",
    "נשלח",
    "תאריך",
    "надіслано",
    "dikirim",
    "tanggal",
    "đã gửi",
    "ngày",
    "送信日時",
    "日付",
    "发送时间",
    "时间",
    "日期",
    "寄件日期",
    "보낸 날짜",
    "날짜",
];

/// Outlook-style header names that carry text (`From:`, `Betreff:`).
pub const TEXT_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "von",
    "an",
    "betreff",
    "kopie",
    "de",
    "à",
    "a",
    "objet",
    "expéditeur",
    "destinataire",
    "répondre à",
    "para",
    "asunto",
    "assunto",
    "da",
    "oggetto",
    "risposta",
    "van",
    "aan",
    "onderwerp",
    "beantwoorden - aan",
    "od",
    "do",
    "temat",
    "dw",
    "от",
    "кому",
    "тема",
    "копия",
    "kimden",
    "kime",
    "konu",
    "bilgi",
    "lähettäjä",
    "vastaanottaja",
    "aihe",
    "kopio",
    "från",
    "till",
    "ämne",
    "kopia",
    "fra",
    "til",
    "emne",
    "komu",
    "předmět",
    "kopie",
    "feladó",
    "címzett",
    "tárgy",
    "másolatot kap",
    "către",
    "subiect",
    "από",
    "προς",
    "θέμα",
    "κοιν",
    "من",
    "إلى",
    "الموضوع",
    "نسخة",
    "מאת",
    "אל",
    "נושא",
    "עותק",
    "від",
    "тема",
    "dari",
    "kepada",
    "perihal",
    "subjek",
    "từ",
    "đến",
    "chủ đề",
    "差出人",
    "宛先",
    "件名",
    "発信者",
    "发件人",
    "收件人",
    "主题",
    "抄送",
    "寄件者",
    "收件者",
    "主旨",
    "副本",
    "보낸 사람",
    "받는 사람",
    "제목",
    "참조",
    "fra",
    "til",
];

/// Mobile and app footers, each from the start of a line.
pub const FOOTERS: &[&str] = &[
    // English, whatever the device or app
    r"[(<]*sent (from|via|with|by|using) (\S+\s*){1,8}[)>]*",
    r"sent from my .{1,60}(k-9 mail|fairemail|galaxy|android|iphone|ipad).{0,60}",
    r".{0,80}please excuse my brevity\.?",
    r"get outlook for (ios|android)\S*",
    r"sent with proton ?mail.{0,40}",
    r"\w+ from mobile",
    r"from my .{1,20}",
    // German
    r"von meinem .+ gesendet",
    r"gesendet von .{1,60}",
    r"diese nachricht wurde von .+ gesendet",
    r"von outlook für (android|ios) gesendet",
    r"outlook für (android|ios) herunterladen",
    // French
    r"envoyé (de|depuis) (mon|ma|yahoo|outlook|l'application) .{0,60}",
    r"envoyé à partir de .{1,60}",
    r"télécharger outlook pour (android|ios)",
    // Spanish / Portuguese
    r"enviado desde (mi|yahoo|outlook) .{0,60}",
    r"enviado do (meu|yahoo|outlook) .{0,60}",
    r"enviado (de|con) (mi|outlook|yahoo|proton).{0,60}",
    r"obtener outlook para (android|ios)",
    r"obter o outlook para (android|ios)",
    // Italian
    r"inviato da(l)? .{1,60}",
    r"scarica outlook per (android|ios)",
    // Dutch
    r"verzonden (met|vanaf|van) .{1,60}",
    r"verstuurd (vanaf|van|met) (mijn )?.{1,60}",
    r"outlook voor (android|ios) downloaden",
    // Polish
    r"wysłane z .{1,60}",
    r"wysłano z .{1,60}",
    r"pobierz aplikację outlook .{0,40}",
    // Russian / Ukrainian
    r"отправлено (с|из|через) .{1,60}",
    r"надіслано (з|із) .{1,60}",
    r"получить outlook для (android|ios)",
    // Turkish
    r".{1,60}('|’)?(dan|den|tan|ten) gönderildi",
    r"android için outlook'u edinin",
    // Finnish
    r"lähetetty .{1,60}(sta|stä|lla|llä)",
    // Swedish / Danish / Norwegian
    r"skickat från .{1,60}",
    r"sendt fra .{1,60}",
    r"från min .{1,60}",
    r"hämta outlook för (android|ios)",
    r"hent outlook til (android|ios)",
    // Czech
    r"odesláno z .{1,60}",
    r"(stáhněte|získejte) si outlook pro (android|ios)",
    // Hungarian
    r"(elküldve|küldve) (az|a) .{1,60}",
    // Romanian
    r"trimis de pe .{1,60}",
    r"trimis din .{1,60}",
    // Greek
    r"στάλθηκε από .{1,60}",
    // Arabic / Hebrew
    r"(أُرسلت|أرسلت|تم الإرسال) من .{1,60}",
    r"נשלח מ.{1,60}",
    // Indonesian / Vietnamese
    r"dikirim dari .{1,60}",
    r"gửi từ .{1,60}",
    // Japanese / Chinese / Korean
    r".{1,40}から送信",
    r"从我的.{1,40}发送",
    r"发自我的.{1,40}",
    r"從我的.{1,40}傳送",
    r"来自.{1,40}(iphone|android|outlook)",
    r".{1,40}에서 보냄",
];

/// Keywords one of which every footer contains (prefilter; compared
/// ASCII-case-insensitively, so non-ASCII words are listed as written).
pub const FOOTER_WORDS: &[&str] = &[
    "sent ",
    "from ",
    "brevity",
    "outlook",
    "proton",
    "gesendet",
    "envoyé",
    "Envoyé",
    "enviado",
    "inviato",
    "verzonden",
    "verstuurd",
    "wysłan",
    "Wysłan",
    "отправлено",
    "Отправлено",
    "надіслано",
    "Надіслано",
    "gönderildi",
    "lähetetty",
    "Lähetetty",
    "skickat",
    "sendt",
    "från",
    "Från",
    "odesláno",
    "Odesláno",
    "elküldve",
    "Elküldve",
    "küldve",
    "Küldve",
    "trimis",
    "Trimis",
    "στάλθηκε",
    "Στάλθηκε",
    "أُرسلت",
    "أرسلت",
    "تم الإرسال",
    "נשלח",
    "dikirim",
    "gửi từ",
    "Gửi từ",
    "から送信",
    "发送",
    "发自",
    "傳送",
    "来自",
    "보냄",
    "diese nachricht",
];
