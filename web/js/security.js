// A warning banner when the dashboard reached this server in clear text across a network.
//
// Served over http:// from anything but loopback means `liaison serve --no-tls
// --accept-plaintext-risk`: the token, every command and every data row cross the
// network unencrypted, and anyone who reads one handshake can take control. Say so,
// on every page load, where it cannot be missed.

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]", "::1"]);

function isLoopback(hostname) {
  return LOOPBACK.has(hostname) || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

export function plaintextOffLoopback(loc = window.location) {
  return loc.protocol === "http:" && !isLoopback(loc.hostname);
}

function showBanner() {
  const banner = document.createElement("div");
  banner.id = "plaintext-warning";
  banner.setAttribute("role", "alert");
  banner.style.cssText = "background:#8a1c1c;color:#fff;padding:0.6em 1em;font-weight:600;text-align:center";
  banner.textContent = "Warning: this connection is not encrypted. The access token, commands and data cross " +
    "the network in clear text, and anyone on it can take control. Serve with TLS (the default off loopback).";
  document.body.prepend(banner);
}

if (plaintextOffLoopback()) {
  if (document.body) showBanner();
  else document.addEventListener("DOMContentLoaded", showBanner);
}
