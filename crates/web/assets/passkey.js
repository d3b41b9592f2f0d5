// Passkeys (WebAuthn) for the forms that carry `data-passkey="create"` or
// `data-passkey="get"`: on submit, ask the browser for a new passkey or for a signature,
// put its answer (JSON, binary fields base64url) in the form's hidden `credential`
// field and send the form. The server checks everything; this file only carries data.
// Served from the binary with Subresource Integrity and listed in
// /.well-known/script-inventory.json.
(function () {
  "use strict";

  function fromB64url(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(o) {
    var pk = o.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    pk.user.id = fromB64url(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = fromB64url(c.id); });
    return { publicKey: pk };
  }

  function requestOptions(o) {
    var pk = o.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = fromB64url(c.id); });
    return { publicKey: pk };
  }

  function answer(cred) {
    var r = cred.response;
    var out = {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: toB64url(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = toB64url(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = toB64url(r.authenticatorData);
      out.response.signature = toB64url(r.signature);
      out.response.userHandle = r.userHandle ? toB64url(r.userHandle) : null;
    }
    return JSON.stringify(out);
  }

  function setup(form) {
    var mode = form.getAttribute("data-passkey");
    var status = form.querySelector("[data-passkey-status]");
    var field = form.querySelector("input[name=credential]");
    if (!field || !window.PublicKeyCredential || !navigator.credentials) {
      if (status) status.textContent = form.getAttribute("data-passkey-unsupported") || "";
      return;
    }
    form.hidden = false;
    form.addEventListener("submit", function (ev) {
      if (field.value) return;
      ev.preventDefault();
      if (status) status.textContent = "";
      var options;
      try {
        options = JSON.parse(form.getAttribute("data-passkey-options"));
      } catch (e) {
        if (status) status.textContent = form.getAttribute("data-passkey-failed") || "";
        return;
      }
      var call = mode === "create"
        ? navigator.credentials.create(creationOptions(options))
        : navigator.credentials.get(requestOptions(options));
      call.then(function (cred) {
        field.value = answer(cred);
        form.submit();
      }, function () {
        if (status) status.textContent = form.getAttribute("data-passkey-failed") || "";
      });
    });
  }

  var forms = document.querySelectorAll("form[data-passkey]");
  for (var i = 0; i < forms.length; i++) setup(forms[i]);
})();
