// qmoi dashboard: shows times in the viewer's own zone, and runs the
// passkey ceremonies (WebAuthn needs script). Live updates are htmx's SSE
// extension; nothing else lives here.
(function () {
  "use strict";
  function localize(root) {
    var fmt = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var t = new Date(el.getAttribute("datetime"));
      if (!isNaN(t.getTime()) && !el.hasAttribute("data-local")) {
        el.setAttribute("data-local", "");
        el.title = el.textContent;
        el.textContent = fmt.format(t);
      }
    });
  }

  // base64url <-> bytes, as WebAuthn's JSON carries binary fields.
  function bytes(s) {
    var b = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
    var out = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
    return out.buffer;
  }
  function b64(buf) {
    var a = new Uint8Array(buf), s = "";
    for (var i = 0; i < a.length; i++) s += String.fromCharCode(a[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) throw new Error(j.error || ("refused (" + r.status + ")"));
        return j;
      });
    });
  }
  function say(text) {
    var el = document.getElementById("passkey-status");
    if (el) el.textContent = text;
  }

  function register(btn) {
    var csrf = btn.getAttribute("data-csrf");
    var label = (document.getElementById("passkey-label") || {}).value || "";
    say("Waiting for your device…");
    post("/passkey/register/start", { csrf: csrf }).then(function (o) {
      var pk = o.publicKey;
      pk.challenge = bytes(pk.challenge);
      pk.user.id = bytes(pk.user.id);
      (pk.excludeCredentials || []).forEach(function (c) { c.id = bytes(c.id); });
      return navigator.credentials.create({ publicKey: pk });
    }).then(function (cred) {
      var r = cred.response;
      return post("/passkey/register/finish", {
        csrf: csrf, label: label,
        credential: {
          id: cred.id, rawId: b64(cred.rawId), type: cred.type,
          extensions: cred.getClientExtensionResults(),
          response: {
            attestationObject: b64(r.attestationObject),
            clientDataJSON: b64(r.clientDataJSON),
            transports: r.getTransports ? r.getTransports() : undefined
          }
        }
      });
    }).then(function () {
      window.location.reload();
    }).catch(function (e) { say("No passkey registered: " + e.message); });
  }

  function signIn() {
    var ceremony;
    say("Waiting for your device…");
    post("/passkey/sign-in/start", {}).then(function (o) {
      ceremony = o.ceremony;
      var pk = o.options.publicKey;
      pk.challenge = bytes(pk.challenge);
      (pk.allowCredentials || []).forEach(function (c) { c.id = bytes(c.id); });
      return navigator.credentials.get({ publicKey: pk });
    }).then(function (cred) {
      var r = cred.response;
      return post("/passkey/sign-in/finish", {
        ceremony: ceremony,
        credential: {
          id: cred.id, rawId: b64(cred.rawId), type: cred.type,
          extensions: cred.getClientExtensionResults(),
          response: {
            authenticatorData: b64(r.authenticatorData),
            clientDataJSON: b64(r.clientDataJSON),
            signature: b64(r.signature),
            userHandle: r.userHandle ? b64(r.userHandle) : null
          }
        }
      });
    }).then(function (j) {
      window.location.assign(j.next || "/");
    }).catch(function (e) { say("Not signed in: " + e.message); });
  }

  document.addEventListener("click", function (e) {
    var btn = e.target.closest && e.target.closest("[data-passkey]");
    if (!btn) return;
    e.preventDefault();
    if (btn.getAttribute("data-passkey") === "register") register(btn);
    else signIn();
  });
  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:afterSwap", function (e) { localize(e.target); });
  document.addEventListener("htmx:afterSettle", function (e) { localize(e.target); });
})();
