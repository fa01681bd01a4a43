#!/usr/bin/env python3
"""Writes qmoi's own reply evaluation set (tests/eval/replies/*.eml and
tests/eval/expected.toml).

Each case is a complete reply to a real qmoi notification (the text of
templates/email/notification.txt as rendered for a job failure or a proposed
fix), built the way a given client in a given UI language builds a reply:
its MIME shape (multipart/alternative, quoted-printable, format=flowed,
CRLF), its attribution or header block, its quoting, its footers. Written
for qmoi from the clients' observed behaviour; no other project's fixtures.

Re-run after editing: python3 tests/eval/make_replies.py
"""
import base64, os, quopri, textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
BOT = "bot@qmoi.test"
MASTER = "master@qmoi.test"

FIX = """—— Reply above this line to answer qmoi ——

[qmoi #12] Fix proposed: group/app / test

Platform:  gitlab
Project:   group/app <http://gitlab.qmoi.test/group/app>

Ref:       main
Pipeline:  4412
Job:       test
Link:      http://gitlab.qmoi.test/group/app/-/jobs/991

Reason:    script_failure
Error excerpt:
    error[E0425]: cannot find value `cfg` in this scope
      --> src/app.rs:41:13

Proposed fix: Import cfg in src/app.rs
    Where: src/app.rs
    Merge request: !45 <http://gitlab.qmoi.test/group/app/-/merge_requests/45>

To answer, reply to this email and write your answer on the first line,
above the quoted text:

    approve

    reject: <reason>

    retry

    status   (details)     help   (all commands)

— QMOI (AI Developer)"""

JOB = FIX.replace("[qmoi #12] Fix proposed: group/app / test", "[qmoi #7] Job failed: group/app / lint").replace(
    "Proposed fix: Import cfg in src/app.rs\n    Where: src/app.rs\n    Merge request: !45 <http://gitlab.qmoi.test/group/app/-/merge_requests/45>\n\n", ""
).replace("    approve\n\n    reject: <reason>\n\n    retry\n", "    retry\n\n    ack\n\n    silence\n")

# Per language: weekday/date strings and the localized strings clients use.
L = {
 "en": dict(gmail="On Tue, Nov 24, 2026 at 12:03 PM {n} <{a}> wrote:", tb="On 24/11/2026 12:03, {n} wrote:",
            apple="On 24 Nov 2026, at 12:03, {n} <{a}> wrote:", hdr=("From", "Sent", "To", "Subject"),
            sent="Tuesday, November 24, 2026 12:03 PM", iphone="Sent from my iPhone",
            olm="Get Outlook for Android", orig="Original message", sdate="Date"),
 "de": dict(gmail="Am Di., 24. Nov. 2026 um 12:03 Uhr schrieb {n} <{a}>:", tb="Am 24.11.26 um 12:03 schrieb {n}:",
            apple="Am 24.11.2026 um 12:03 schrieb {n} <{a}>:", hdr=("Von", "Gesendet", "An", "Betreff"),
            sent="Dienstag, 24. November 2026 12:03", iphone="Von meinem iPhone gesendet",
            olm="Outlook für Android herunterladen", orig="Originalnachricht", sdate="Datum"),
 "fr": dict(gmail="Le mar. 24 nov. 2026 à 12:03, {n} <{a}> a écrit :", tb="Le 24/11/2026 à 12:03, {n} a écrit :",
            apple="Le 24 nov. 2026 à 12:03, {n} <{a}> a écrit :", hdr=("De", "Envoyé", "À", "Objet"),
            sent="mardi 24 novembre 2026 12:03", iphone="Envoyé de mon iPhone",
            olm="Télécharger Outlook pour Android", orig="Message d'origine", sdate="Date"),
 "es": dict(gmail="El mar, 24 nov 2026 a las 12:03, {n} (<{a}>) escribió:", tb="El 24/11/26 a las 12:03, {n} escribió:",
            apple="El 24 nov 2026, a las 12:03, {n} <{a}> escribió:", hdr=("De", "Enviado", "Para", "Asunto"),
            sent="martes, 24 de noviembre de 2026 12:03", iphone="Enviado desde mi iPhone",
            olm="Obtener Outlook para Android", orig="Mensaje original", sdate="Fecha"),
 "pt": dict(gmail="Em ter., 24 de nov. de 2026 às 12:03, {n} <{a}> escreveu:", tb="Em 24/11/2026 12:03, {n} escreveu:",
            apple="Em 24 de nov. de 2026, à(s) 12:03, {n} <{a}> escreveu:", hdr=("De", "Enviado", "Para", "Assunto"),
            sent="terça-feira, 24 de novembro de 2026 12:03", iphone="Enviado do meu iPhone",
            olm="Obter o Outlook para Android", orig="Mensagem original", sdate="Data"),
 "it": dict(gmail="Il giorno mar 24 nov 2026 alle ore 12:03 {n} <{a}> ha scritto:", tb="Il 24/11/2026 12:03, {n} ha scritto:",
            apple="Il giorno 24 nov 2026, alle ore 12:03, {n} <{a}> ha scritto:", hdr=("Da", "Inviato", "A", "Oggetto"),
            sent="martedì 24 novembre 2026 12:03", iphone="Inviato da iPhone",
            olm="Scarica Outlook per Android", orig="Messaggio originale", sdate="Data"),
 "nl": dict(gmail="Op di 24 nov 2026 om 12:03 schreef {n} <{a}>:", tb="Op 24-11-2026 om 12:03 schreef {n}:",
            apple="Op 24 nov. 2026 om 12:03 heeft {n} <{a}> het volgende geschreven:", hdr=("Van", "Verzonden", "Aan", "Onderwerp"),
            sent="dinsdag 24 november 2026 12:03", iphone="Verstuurd vanaf mijn iPhone",
            olm="Outlook voor Android downloaden", orig="Oorspronkelijk bericht", sdate="Datum"),
 "pl": dict(gmail="wt., 24 lis 2026 o 12:03 {n} <{a}> napisał(a):", tb="W dniu 24.11.2026 o 12:03, {n} pisze:",
            apple="Wiadomość napisana przez {n} <{a}> w dniu 24.11.2026, o godz. 12:03:", hdr=("Od", "Wysłano", "Do", "Temat"),
            sent="wtorek, 24 listopada 2026 12:03", iphone="Wysłane z iPhone'a",
            olm="Pobierz aplikację Outlook dla systemu Android", orig="Oryginalna wiadomość", sdate="Data"),
 "ru": dict(gmail="вт, 24 нояб. 2026 г. в 12:03, {n} <{a}>:", tb="24.11.2026 12:03, {n} пишет:",
            apple="24 нояб. 2026 г., в 12:03, {n} <{a}> написал(а):", hdr=("От", "Отправлено", "Кому", "Тема"),
            sent="24 ноября 2026 г. 12:03", iphone="Отправлено с iPhone",
            olm="Получить Outlook для Android", orig="Исходное сообщение", sdate="Дата"),
 "tr": dict(gmail="24 Kas 2026 Sal, 12:03 tarihinde {n} <{a}> şunu yazdı:", tb="24.11.2026 12:03 tarihinde {n} yazdı:",
            apple="24 Kas 2026 tarihinde 12:03 saatinde, {n} <{a}> şunları yazdı:", hdr=("Kimden", "Gönderildi", "Kime", "Konu"),
            sent="24 Kasım 2026 Salı 12:03", iphone="iPhone'umdan gönderildi",
            olm="Android için Outlook'u edinin", orig="Özgün ileti", sdate="Tarih"),
 "ja": dict(gmail="2026年11月24日(火) 12:03 {n} <{a}>:", tb="On 2026/11/24 12:03, {n} wrote:",
            apple="2026/11/24 12:03、{n} <{a}>のメール:", hdr=("差出人", "送信日時", "宛先", "件名"),
            sent="2026年11月24日 12:03", iphone="iPhoneから送信",
            olm="Android 版 Outlook を入手", orig="元のメッセージ", sdate="日付"),
 "zh": dict(gmail="{n} <{a}> 于2026年11月24日周二 12:03写道：", tb="在 2026/11/24 12:03, {n} 写道:",
            apple="2026年11月24日 12:03，{n} <{a}> 写道：", hdr=("发件人", "发送时间", "收件人", "主题"),
            sent="2026年11月24日 12:03", iphone="从我的iPhone发送",
            olm="获取 Android 版 Outlook", orig="原始邮件", sdate="日期"),
 "fi": dict(gmail="ti 24.11.2026 klo 12.03 {n} (<{a}>) kirjoitti:", tb="{n} kirjoitti 24.11.2026 klo 12.03:",
            apple="{n} <{a}> kirjoitti 24.11.2026 kello 12.03:", hdr=("Lähettäjä", "Lähetetty", "Vastaanottaja", "Aihe"),
            sent="24. marraskuuta 2026 12.03", iphone="Lähetetty iPhonesta",
            olm="Hanki Outlook for Android", orig="Alkuperäinen viesti", sdate="Päivämäärä"),
 "sv": dict(gmail="Den tis 24 nov. 2026 kl 12:03 skrev {n} <{a}>:", tb="Den 2026-11-24 kl. 12:03, skrev {n}:",
            apple="24 nov. 2026 kl. 12:03 skrev {n} <{a}>:", hdr=("Från", "Skickat", "Till", "Ämne"),
            sent="den 24 november 2026 12:03", iphone="Skickat från min iPhone",
            olm="Hämta Outlook för Android", orig="Originalmeddelande", sdate="Datum"),
}
NAME = "QMOI (AI Developer)"

def quote(text, prefix="> "):
    return "\n".join((prefix + l).rstrip() if l else prefix.rstrip() for l in text.split("\n"))

def wrap_attr(line, width=76):
    """Gmail's plain-text part wraps a long attribution like any line."""
    if len(line) <= width:
        return line
    cut = line.rfind(" ", 0, width)
    if cut <= 0:
        return line
    return line[:cut] + "\n" + line[cut + 1:]

def hard_wrap(text, width=76):
    out = []
    for para in text.split("\n"):
        out.append("\n".join(textwrap.wrap(para, width)) if len(para) > width else para)
    return "\n".join(out)

def flowed(text, width=72):
    """RFC 3676 format=flowed: soft breaks end in a space."""
    out = []
    for line in text.split("\n"):
        if line.startswith(">") or len(line) <= width:
            out.append(line)
            continue
        words = line.split(" ")
        cur = ""
        for w in words:
            if cur and len(cur) + 1 + len(w) > width:
                out.append(cur + " ")
                cur = w
            else:
                cur = (cur + " " + w) if cur else w
        out.append(cur)
    return "\n".join(out)

def attr(lang, kind):
    return L[lang][kind].format(n=NAME, a=BOT)

def outlook_block(lang, orig, subject, sep="_" * 32):
    f, s, t, j = L[lang]["hdr"]
    colon = " :" if lang == "fr" else ":"
    return f"{sep}\n{f}{colon} {NAME} <{BOT}>\n{s}{colon} {L[lang]['sent']}\n{t}{colon} Master <{MASTER}>\n{j}{colon} {subject}\n\n{orig}"

def body_for(client, lang, answer, orig, subject):
    """The text/plain body a client writes for `answer` above/below `orig`."""
    if client == "gmail":
        return f"{hard_wrap(answer)}\n\n{wrap_attr(attr(lang, 'gmail'))}\n\n{quote(orig)}\n"
    if client == "gmail-android":
        return f"{answer}\n\n{attr(lang, 'gmail')}\n\n{quote(orig)}\n"
    if client == "outlook-desktop":
        return f"{answer}\n\n{outlook_block(lang, orig, subject)}\n"
    if client == "outlook-web":
        return f"{answer}\n\n{outlook_block(lang, orig, subject, sep='_' * 40)}\n"
    if client == "outlook-mobile":
        return f"{answer}\n\n{L[lang]['olm']}<https://aka.ms/AAb9ysg>\n{outlook_block(lang, orig, subject)}\n"
    if client == "apple-mail":
        return f"{answer}\n\n{quote(attr(lang, 'apple'))}\n> \n{quote(orig)}\n"
    if client == "iphone":
        return f"{answer}\n\n{L[lang]['iphone']}\n\n{quote(attr(lang, 'apple'))}\n> \n{quote(orig)}\n"
    if client == "thunderbird":
        return f"{flowed(answer)}\n\n{attr(lang, 'tb')}\n{quote(orig)}\n"
    if client == "thunderbird-bottom":
        return f"{attr(lang, 'tb')}\n{quote(orig)}\n\n{flowed(answer)}\n"
    if client == "yahoo":
        y = {"en": "On Tuesday, November 24, 2026, 12:03:01 PM GMT+1, {n} <{a}> wrote:",
             "de": "Am Dienstag, 24. November 2026, 12:03:01 MEZ hat {n} <{a}> Folgendes geschrieben:",
             "fr": "Le mardi 24 novembre 2026, 12:03:01 UTC+1, {n} <{a}> a écrit :",
             "es": "El martes, 24 de noviembre de 2026, 12:03:01 CET, {n} <{a}> escribió:"}[lang]
        return f"{answer}\n\nSent from Yahoo Mail on Android\n\n  {y.format(n=NAME, a=BOT)}\n\n  {orig.replace(chr(10), chr(10) + '  ')}\n"
    if client == "proton":
        return (f"{answer}\n\nSent with Proton Mail secure email.\n\n"
                f"\u2010\u2010\u2010\u2010\u2010\u2010\u2010 Original Message \u2010\u2010\u2010\u2010\u2010\u2010\u2010\n"
                f"On Tuesday, November 24th, 2026 at 12:03, {NAME} <{BOT}> wrote:\n\n{quote(orig)}\n")
    if client == "k9":
        return f"{answer}\n\n{attr(lang, 'gmail') if lang != 'en' else 'On November 24, 2026 12:03:00 PM GMT+01:00, ' + chr(34) + NAME + chr(34) + ' <' + BOT + '> wrote:'}\n{quote(orig)}\n-- \nSent from my Android device with K-9 Mail. Please excuse my brevity.\n"
    if client == "fairemail":
        return f"{answer}\n\n24 Nov 2026 12:03:00 {NAME} <{BOT}>:\n\n{quote(orig)}\n"
    if client == "samsung":
        f, s, t, j = L[lang]["hdr"]
        colon = " :" if lang == "fr" else ":"
        footer = {"en": "Sent from my Galaxy", "de": "Von meinem Samsung Galaxy Smartphone gesendet.",
                  "fr": "Envoyé depuis mon appareil Galaxy", "es": "Enviado desde mi smartphone Samsung Galaxy.",
                  "it": "Inviato dal mio smartphone Samsung Galaxy.", "pl": "Wysłane z telefonu Samsung Galaxy",
                  "ru": "Отправлено с устройства Galaxy", "tr": "Samsung Galaxy akıllı telefonumdan gönderildi."}[lang]
        return (f"{answer}\n\n\n{footer}\n\n-------- {L[lang]['orig']} --------\n{f}{colon} {NAME} <{BOT}> \n"
                f"{L[lang]['sdate']}{colon} 24/11/2026 12:03 (GMT+01:00) \n{t}{colon} {MASTER} \n{j}{colon} {subject} \n\n{orig}\n")
    if client == "neomutt":
        return f"{answer}\n\n* {NAME} <{BOT}> [2026-11-24 12:03]:\n{quote(orig)}\n"
    if client == "neomutt-inline":
        lines = orig.split("\n")
        head = "\n".join(lines[:4])
        rest = "\n".join(lines[4:])
        return f"* {NAME} <{BOT}> [2026-11-24 12:03]:\n{quote(head)}\n\n{answer}\n\n{quote(rest)}\n"
    raise ValueError(client)

def eml(i, client, lang, answer, notif, extra_headers=""):
    orig = FIX if notif == "fix" else JOB
    nid = 12 if notif == "fix" else 7
    subject = orig.split("\n")[2]
    tok = f"t{i:03d}evalxyz"
    body = body_for(client, lang, answer, orig, subject)
    re = {"de": "AW", "fr": "RE", "es": "RE", "pt": "RE", "it": "R", "nl": "RE", "pl": "RE",
          "ru": "RE", "tr": "YNT", "ja": "RE", "zh": "回复", "fi": "VS", "sv": "SV"}.get(lang, "Re")
    hdr = [
        f"Return-Path: <{MASTER}>",
        f"From: Master <{MASTER}>",
        f"To: {NAME} <bot+{tok}@qmoi.test>",
        f"Subject: {re}: {subject}",
        f"Date: Tue, 24 Nov 2026 12:{10 + i % 50:02d}:00 +0100",
        f"Message-ID: <eval-{i:03d}@{client}.example>",
        f"In-Reply-To: <qmoi.{tok}.a1b2@qmoi.test>",
        f"References: <qmoi.{tok}.a1b2@qmoi.test>",
        "MIME-Version: 1.0",
    ]
    if extra_headers:
        hdr.append(extra_headers)
    crlf = client.startswith("outlook") or client in ("gmail", "gmail-android", "yahoo", "samsung")
    if client == "thunderbird" or client == "thunderbird-bottom":
        hdr += ["Content-Type: text/plain; charset=UTF-8; format=flowed", "Content-Transfer-Encoding: 8bit"]
        raw = "\r\n".join(hdr) + "\r\n\r\n" + body.replace("\n", "\r\n")
    elif client in ("gmail", "gmail-android", "outlook-web", "outlook-mobile", "yahoo", "proton", "samsung"):
        qp = quopri.encodestring(body.replace("\n", "\r\n").encode()).decode()
        html = "<div dir=\"ltr\">" + answer.replace("\n", "<br>") + "</div><blockquote>" + orig.replace("\n", "<br>") + "</blockquote>"
        b = f"b{i:03d}alt"
        hdr.append(f"Content-Type: multipart/alternative; boundary=\"{b}\"")
        parts = (f"--{b}\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{qp}\r\n"
                 f"--{b}\r\nContent-Type: text/html; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                 + base64.encodebytes(html.encode()).decode().replace("\n", "\r\n") + f"\r\n--{b}--\r\n")
        raw = "\r\n".join(hdr) + "\r\n\r\n" + parts
    elif client == "outlook-desktop":
        qp = quopri.encodestring(body.replace("\n", "\r\n").encode()).decode()
        hdr += ["Content-Type: text/plain; charset=\"utf-8\"", "Content-Transfer-Encoding: quoted-printable", "X-Mailer: Microsoft Outlook 16.0"]
        raw = "\r\n".join(hdr) + "\r\n\r\n" + qp
    else:
        b64 = client in ("apple-mail", "iphone")
        if b64:
            hdr += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"]
            raw = "\r\n".join(hdr) + "\r\n\r\n" + base64.encodebytes(body.replace("\n", "\r\n").encode()).decode().replace("\n", "\r\n")
        else:
            hdr += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
            raw = "\r\n".join(hdr) + "\n\n" + body
            raw = raw.replace("\r\n", "\n")
    return raw

BANNER = "CAUTION: This email originated from outside of the organization. Do not\nclick links or open attachments unless you recognize the sender."
REASON_LONG = ("reject: the fix imports cfg from the wrong crate; the config type lives in "
               "qmoi-config since the split last week, so this will not build on the release branch")
REASON_LONG_WANT = REASON_LONG[len("reject: "):]

# (client, lang, notification, answer, expected command, expected reason or None, what)
CASES = [
 ("gmail", "en", "fix", "approve", "approve", None, "plain"),
 ("gmail", "de", "fix", "Ja, bitte approve. Danke!", "approve", None, "politeness"),
 ("gmail", "fr", "fix", REASON_LONG, "reject", REASON_LONG_WANT, "long reason, hard-wrapped"),
 ("gmail", "es", "job", "retry", "retry", None, "plain"),
 ("gmail", "pl", "fix", "Approve?\n\n@bob co o tym myślisz?", None, None, "question"),
 ("gmail", "ru", "job", "ack", "ack", None, "verbless attribution"),
 ("gmail", "ja", "fix", "approve 👍", "approve", None, "emoji"),
 ("gmail", "zh", "job", "retry", "retry", None, "full-width colon"),
 ("gmail", "tr", "fix", "", None, None, "quote only"),
 ("gmail", "fi", "job", "silence 2h", "silence", None, "duration"),
 ("gmail-android", "en", "fix", "Yes, approve", "approve", None, "affirmation"),
 ("gmail-android", "it", "job", "retry, grazie", "retry", None, "thanks"),
 ("gmail-android", "sv", "fix", "Don't approve yet, I'm checking with Bob", None, None, "negation"),
 ("gmail-android", "nl", "job", "Hoi,\n\nretry\n\nGroeten,\nMaster", "retry", None, "greeting"),
 ("outlook-desktop", "en", "fix", BANNER + "\n\napprove", "approve", None, "server banner"),
 ("outlook-desktop", "de", "fix", "reject: der Test ist instabil, nicht der Code", "reject", "der Test ist instabil, nicht der Code", "reason"),
 ("outlook-desktop", "ru", "job", "retry", "retry", None, "Cyrillic header block"),
 ("outlook-desktop", "ja", "job", "ack", "ack", None, "Japanese header block"),
 ("outlook-desktop", "zh", "fix", "approve", "approve", None, "Chinese header block"),
 ("outlook-desktop", "pl", "fix", "not yet", None, None, "negation only"),
 ("outlook-web", "en", "job", "Thanks for the heads-up, I'll look at it after lunch.", None, None, "off-topic"),
 ("outlook-web", "fr", "fix", "Bonjour,\n\napprove\n\nCordialement,\nMaster", "approve", None, "greeting and sign-off"),
 ("outlook-web", "es", "fix", "approve, looks good to me", "approve", None, "commentary"),
 ("outlook-web", "tr", "job", "retry", "retry", None, "Turkish header block"),
 ("outlook-web", "nl", "fix", "do not merge", None, None, "negation"),
 ("outlook-mobile", "en", "fix", "lgtm, ship it", "approve", None, "two aliases"),
 ("outlook-mobile", "de", "job", "retry", "retry", None, "localized mobile footer"),
 ("outlook-mobile", "fr", "fix", "approve", "approve", None, "localized mobile footer"),
 ("outlook-mobile", "it", "job", "status", "status", None, "read-only"),
 ("outlook-mobile", "pt", "fix", "", None, None, "quote only"),
 ("apple-mail", "en", "fix", "Approve.", "approve", None, "quoted attribution"),
 ("apple-mail", "de", "job", "Retry bitte", "retry", None, "politeness"),
 ("apple-mail", "fr", "fix", "reject: on garde l'ancienne version pour l'instant", "reject", "on garde l'ancienne version pour l'instant", "reason"),
 ("apple-mail", "nl", "fix", "approve?", None, None, "question"),
 ("apple-mail", "zh", "job", "ack", "ack", None, "Chinese attribution"),
 ("iphone", "en", "job", "Retry", "retry", None, "iPhone footer"),
 ("iphone", "de", "fix", "Approve", "approve", None, "localized iPhone footer"),
 ("iphone", "es", "fix", "Approve 👍🏼", "approve", None, "emoji skin tone"),
 ("iphone", "ru", "job", "Retry", "retry", None, "localized iPhone footer"),
 ("iphone", "ja", "fix", "Approve!", "approve", None, "exclamation"),
 ("iphone", "pl", "job", "", None, None, "quote only"),
 ("iphone", "fi", "fix", "Ok, approve", "approve", None, "affirmation"),
 ("thunderbird", "en", "fix", REASON_LONG, "reject", REASON_LONG_WANT, "long reason, format=flowed"),
 ("thunderbird", "de", "fix", "approve", "approve", None, "plain"),
 ("thunderbird", "fr", "job", "retry", "retry", None, "plain"),
 ("thunderbird", "pl", "fix", "approve", "approve", None, "Polish attribution"),
 ("thunderbird", "ru", "job", "silence 1d", "silence", None, "duration"),
 ("thunderbird", "sv", "fix", "Approve, but wait for Bob's go first.", None, None, "negation in commentary"),
 ("thunderbird-bottom", "en", "job", "retry", "retry", None, "bottom-posted"),
 ("thunderbird-bottom", "de", "fix", "approve", "approve", None, "bottom-posted"),
 ("yahoo", "en", "fix", "approve", "approve", None, "Yahoo attribution"),
 ("yahoo", "de", "job", "retry", "retry", None, "Yahoo German attribution"),
 ("yahoo", "fr", "fix", "Je suis absent jusqu'à lundi.", None, None, "off-topic"),
 ("yahoo", "es", "fix", "reject: prefiero revisarlo a mano", "reject", "prefiero revisarlo a mano", "reason"),
 ("proton", "en", "fix", "approve", "approve", None, "Proton separator (U+2010)"),
 ("proton", "en", "job", "Should I retry or wait for the infra fix?", None, None, "question"),
 ("k9", "en", "job", "retry", "retry", None, "K-9 attribution + footer"),
 ("k9", "de", "fix", "approve", "approve", None, "K-9 German"),
 ("fairemail", "en", "fix", "approve", "approve", None, "FairEmail attribution"),
 ("fairemail", "nl", "job", "ack", "ack", None, "FairEmail attribution"),
 ("samsung", "en", "job", "retry", "retry", None, "Samsung separator"),
 ("samsung", "de", "fix", "approve", "approve", None, "Samsung German"),
 ("samsung", "fr", "fix", "approve", "approve", None, "Samsung French"),
 ("samsung", "tr", "job", "retry", "retry", None, "Samsung Turkish"),
 ("neomutt", "en", "fix", "approve", "approve", None, "mutt attribution"),
 ("neomutt-inline", "en", "fix", "approve", "approve", None, "inline between quotes"),
 ("neomutt-inline", "de", "job", "retry", "retry", None, "inline between quotes"),
 ("gmail", "en", "fix", "Approve? Actually, let's wait for the review.", None, None, "question + negation"),
]

def main():
    out = os.path.join(HERE, "replies")
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    toml = ["# Expected reading of each reply in replies/ (written by make_replies.py).",
            "# command = \"\" means: no command may run (quote only, question, negation, off-topic).", ""]
    for i, (client, lang, notif, answer, want, reason, what) in enumerate(CASES, 1):
        name = f"{i:03d}-{client}-{lang}.eml"
        with open(os.path.join(out, name), "w", encoding="utf-8", newline="") as fh:
            fh.write(eml(i, client, lang, answer, notif))
        toml += ["[[reply]]", f"file = \"{name}\"", f"client = \"{client}\"", f"lang = \"{lang}\"",
                 f"what = \"{what}\"", f"command = \"{want or ''}\""]
        if reason:
            toml.append("reason = " + '"' + reason.replace('\\', '\\\\').replace('"', '\\"') + '"')
        toml.append("")
    with open(os.path.join(HERE, "expected.toml"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(toml))
    print(f"{len(CASES)} replies, {len(set(c[0] for c in CASES))} clients, {len(set(c[1] for c in CASES))} languages")

if __name__ == "__main__":
    main()
