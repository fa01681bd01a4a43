#!/usr/bin/env bash
# A private Postfix + Dovecot for development and tests: all state in one
# directory, loopback ports only, nothing ever delivered off the machine,
# started and stopped by PID file. Needs root (as the daemons do).
#
#   devmail.sh install                 install the Debian packages if missing
#   devmail.sh start DIR BASE_PORT USER:PASS...
#        SMTP 127.0.0.1:BASE+25, "filtered" SMTP BASE+26 (see below),
#        submission (STARTTLS+AUTH) BASE+587,
#        submissions (TLS+AUTH) BASE+465, IMAP BASE+143, IMAPS BASE+993.
#        Domain qmoi.test; plus-addressing (user+tag@) delivers to user.
#        Writes DIR/env (ports, CA file); clients trust DIR/tls/ca.pem.
#        BASE+26 stands in for an upstream DKIM/DMARC filter: it prepends
#        "Authentication-Results: mx.qmoi.test; dmarc=VERDICT" for envelope
#        senders listed in DEVMAIL_VERDICTS ("addr=pass addr2=fail ...").
#   devmail.sh stop DIR
set -euo pipefail

DOMAIN=qmoi.test
VMAIL_UID=5000

install_packages() {
  if command -v postfix >/dev/null && command -v dovecot >/dev/null && [ -e /usr/lib/dovecot/lmtp ] \
     && [ -e /usr/lib/dovecot/imap ] && command -v openssl >/dev/null; then
    return 0
  fi
  echo "devmail: installing postfix and dovecot (no system services are started)" >&2
  export DEBIAN_FRONTEND=noninteractive
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  # Keep package scripts from starting system-wide daemons on :25/:143.
  local policy=/usr/sbin/policy-rc.d backup=""
  if [ -e "$policy" ]; then backup=$(mktemp); cp -p "$policy" "$backup"; fi
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"
  local rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      postfix dovecot-core dovecot-imapd dovecot-lmtpd openssl ca-certificates; } >&2 || rc=$?
  if [ -n "$backup" ]; then cp -p "$backup" "$policy"; rm -f "$backup"; else rm -f "$policy"; fi
  return $rc
}

backdate() { touch -d '-5 seconds' "$@"; }

start() {
  local dir=$1 base=$2; shift 2
  local smtp=$((base + 25)) filtered=$((base + 26)) sub=$((base + 587)) subs=$((base + 465)) imap=$((base + 143)) imaps=$((base + 993))
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  chmod 0755 "$dir"
  mkdir -p "$dir"/{etc/postfix,etc/dovecot,postfix/queue,postfix/data,dovecot/run,dovecot/state,log,mail,tls}
  chown postfix "$dir/postfix/data"
  chmod 0755 "$dir"/{etc,etc/postfix,etc/dovecot,dovecot,log,tls}
  install -d -o "$VMAIL_UID" -g "$VMAIL_UID" -m 0755 "$dir/mail"

  if [ ! -s "$dir/tls/cert.pem" ]; then
    # A throwaway CA (trust ca.pem) and a server certificate it signed:
    # TLS clients refuse a CA certificate used as a server's own.
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=devmail test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
      -keyout "$dir/tls/ca.key" -out "$dir/tls/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=mail.$DOMAIN" \
      -keyout "$dir/tls/key.pem" -out "$dir/tls/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:mail.%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$DOMAIN" > "$dir/tls/ext.cnf"
    openssl x509 -req -in "$dir/tls/server.csr" -CA "$dir/tls/ca.pem" -CAkey "$dir/tls/ca.key" -CAcreateserial \
      -days 30 -extfile "$dir/tls/ext.cnf" -out "$dir/tls/cert.pem" 2>/dev/null
    chmod 0644 "$dir/tls/cert.pem" "$dir/tls/ca.pem"; chmod 0600 "$dir/tls/key.pem" "$dir/tls/ca.key"
  fi

  : > "$dir/etc/dovecot/users"; : > "$dir/etc/postfix/vmailbox"
  for up in "$@"; do
    local user=${up%%:*} pass=${up#*:}
    echo "$user@$DOMAIN:{PLAIN}$pass" >> "$dir/etc/dovecot/users"
    echo "$user@$DOMAIN OK" >> "$dir/etc/postfix/vmailbox"
  done
  chmod 0644 "$dir/etc/dovecot/users"
  : > "$dir/etc/postfix/verdicts"
  for v in ${DEVMAIL_VERDICTS:-}; do
    local addr=${v%%=*} verdict=${v#*=}
    echo "$addr PREPEND Authentication-Results: mx.$DOMAIN; dmarc=$verdict header.from=${addr#*@}" >> "$dir/etc/postfix/verdicts"
  done

  cat > "$dir/etc/dovecot/dovecot.conf" <<CONF
base_dir = $dir/dovecot/run
state_dir = $dir/dovecot/state
instance_name = qmoi-devmail-$base
# One host, one name: Dovecot writes its LMTP Received line "by" the same
# host name as Postfix, as on a real single-server setup (issue #11).
hostname = mail.$DOMAIN
log_path = $dir/log/dovecot.log
listen = 127.0.0.1
protocols = imap lmtp
ssl = yes
ssl_cert = <$dir/tls/cert.pem
ssl_key = <$dir/tls/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
mail_uid = $VMAIL_UID
mail_gid = $VMAIL_UID
mail_location = maildir:$dir/mail/%d/%n
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/etc/dovecot/users
}
userdb {
  driver = static
  args = uid=$VMAIL_UID gid=$VMAIL_UID home=$dir/mail/%d/%n
}
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps
    ssl = yes
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
protocol imap {
  mail_max_userip_connections = 200
}
CONF

  cat > "$dir/etc/postfix/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $dir/postfix/queue
data_directory = $dir/postfix/data
maillog_file = $dir/log/postfix.log
maillog_file_prefixes = $dir/log
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mail.$DOMAIN
mydomain = $DOMAIN
myorigin = $DOMAIN
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
virtual_alias_domains =
virtual_alias_maps =
alias_maps =
alias_database =
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = texthash:$dir/etc/postfix/vmailbox
virtual_transport = lmtp:unix:$dir/dovecot/run/lmtp
recipient_delimiter = +
default_transport = error:devmail delivers nothing off this machine
relay_transport = error:devmail delivers nothing off this machine
smtpd_sasl_type = dovecot
smtpd_sasl_path = $dir/dovecot/run/auth-postfix
smtpd_sasl_authenticated_header = yes
smtpd_tls_cert_file = $dir/tls/cert.pem
smtpd_tls_key_file = $dir/tls/key.pem
smtpd_tls_security_level = may
smtpd_relay_restrictions = permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination
message_size_limit = 20480000
biff = no
CONF

  cat > "$dir/etc/postfix/master.cf" <<CONF
127.0.0.1:$smtp inet n - n - - smtpd
127.0.0.1:$filtered inet n - n - - smtpd
  -o syslog_name=postfix/filtered
  -o smtpd_sender_restrictions=check_sender_access,texthash:$dir/etc/postfix/verdicts
127.0.0.1:$sub inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
127.0.0.1:$subs inet n - n - - smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
  # Postfix re-reads files younger than a second; old files start fast.
  backdate "$dir"/etc/postfix/* "$dir"/etc/dovecot/*

  dovecot -c "$dir/etc/dovecot/dovecot.conf" </dev/null >"$dir/log/dovecot.start" 2>&1
  postfix -c "$dir/etc/postfix" start </dev/null >"$dir/log/postfix.start" 2>&1 || {
    cat "$dir/log/postfix.start" "$dir/log/postfix.log" >&2 2>/dev/null; return 1; }

  for port in $smtp $filtered $sub $subs $imap $imaps; do
    local ok=0
    for _ in $(seq 1 100); do
      if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then ok=1; break; fi
      sleep 0.05
    done
    if [ $ok -ne 1 ]; then
      echo "devmail: port $port did not open" >&2
      cat "$dir"/log/*.log >&2 2>/dev/null || true
      return 1
    fi
  done
  cat > "$dir/env" <<ENV
DEVMAIL_DOMAIN=$DOMAIN
DEVMAIL_SMTP_PORT=$smtp
DEVMAIL_FILTERED_PORT=$filtered
DEVMAIL_SUBMISSION_PORT=$sub
DEVMAIL_SUBMISSIONS_PORT=$subs
DEVMAIL_IMAP_PORT=$imap
DEVMAIL_IMAPS_PORT=$imaps
DEVMAIL_CA_FILE=$dir/tls/ca.pem
ENV
  echo "devmail: up in $dir (smtp $smtp, submission $sub, submissions $subs, imap $imap, imaps $imaps)" >&2
}

is_running() {
  local pid=$1
  [ -r "/proc/$pid/stat" ] || return 1
  # A zombie (state Z) has stopped; PID 1 may reap it late.
  local state; state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)
  [ "$state" != "Z" ]
}

stop_pidfile() {
  local pidfile=$1
  [ -s "$pidfile" ] || return 0
  local pid; pid=$(tr -dc '0-9' < "$pidfile")
  [ -n "$pid" ] || return 0
  is_running "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do is_running "$pid" || return 0; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
}

stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  postfix -c "$dir/etc/postfix" stop >/dev/null 2>&1 || true
  stop_pidfile "$dir/postfix/queue/pid/master.pid"
  stop_pidfile "$dir/dovecot/run/master.pid"
}

case "${1:-}" in
  install) install_packages ;;
  start) [ $# -ge 3 ] || { echo "usage: $0 start DIR BASE_PORT USER:PASS..." >&2; exit 2; }
         install_packages; shift; start "$@" ;;
  stop) [ $# -eq 2 ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: $0 install | start DIR BASE_PORT USER:PASS... | stop DIR" >&2; exit 2 ;;
esac
