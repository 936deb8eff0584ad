// WebSocket connection to a liaison server: handshake, requests, events, reconnects.
//
// The connection remembers the last event sequence number it handed on. When
// the socket drops it reconnects with backoff and sends that number as
// `since`, so the server replays what was missed; events already seen are
// dropped by seq. If the server itself restarted (a new session_id in its
// hello) the old numbers mean nothing, so it starts afresh (since = null).

//
// Liveness: a ping every second keeps `lastContact` (the time of the newest
// frame from the server) fresh. After STALE_MS of silence the handlers hear
// onContact(false, lastContact) and requests are refused here, not sent; after
// DEAD_MS the socket is dropped and reconnected. A request may carry a deadline:
// it is sent with `not_after` (the server's clock, from the pings) so that the
// server refuses it if the network delivers it late, and it fails here as
// "not confirmed" when no reply came by then.

import { CLOSE } from "./constants.js";

const HELLO_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 30000;
export const HEARTBEAT_MS = 1000;
export const STALE_MS = 2000; // silence before the page says "no contact" (goal: within 3 s, with room for a loaded machine)
const DEAD_MS = 8000; // silence before the socket is dropped and a new one opened
const LIVENESS_CHECK_MS = 200;
// Short waits right after a drop, so a restarted server is found within 2 s; never longer than 1.5 s.
const BACKOFF_MS = [100, 250, 500, 1000, 1500];

/** hh:mm:ss of a Date.now() value, or "—". */
export function clock(ms) {
  return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "—";
}

export class RequestError extends Error {
  constructor(code, message, details) {
    super(message);
    this.code = code || "internal";
    this.details = details;
  }
}

export class Connection {
  /**
   * @param {object} options
   *   url: WebSocket URL; token(): the token to send; role(): "controller" | "observer";
   *   handlers: {onState(state, info), onWelcome(welcome, info), onEvent(event),
   *              onGap(gap), onGoodbye(goodbye), onAuthFailed(error), onStrayError(error),
   *              onPong(result, rttMs)}
   */
  constructor({ url, token, role, client = "dashboard", handlers = {}, probe = false }) {
    this.url = url;
    // probe: connect without a token only to learn whether the server needs one; give up
    // quietly (onNeedsToken) if it does or cannot be reached, instead of retrying.
    this.probe = probe;
    this.token = token;
    this.role = role;
    this.client = client;
    this.h = handlers;
    this.ws = null;
    this.phase = "closed"; // closed | hello | auth | open
    this.state = "disconnected"; // connecting | connected | reconnecting | disconnected
    this.lastSeq = null;
    this.sessionId = null;
    this.hello = null;
    this.welcome = null;
    this.attempt = 0;
    this.stopped = true;
    this.authFailed = false;
    this.pending = new Map();
    this.nextId = 1;
    this.timers = { reconnect: null, hello: null, heartbeat: null, liveness: null };
    this.lastContact = null; // Date.now() of the newest frame from the server
    this.fresh = false; // heard from the server within STALE_MS
    this.clockOffset = 0; // server clock minus local clock, seconds (from the pings)
    this.pinging = false;
    this.reconnectAt = null;
    this.everConnected = false;
  }

  start() {
    this.stopped = false;
    this.authFailed = false;
    this.attempt = 0;
    this._open();
  }

  stop(reason = "signed out") {
    this.stopped = true;
    this._clearTimers();
    const ws = this.ws;
    this.ws = null;
    this.phase = "closed";
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, reason); } catch (_) { /* already closed */ }
    }
    this._failPending(new RequestError("connection_lost", "disconnected"));
    this._setState("disconnected", { reason });
  }

  /** Skip the backoff wait and try again now. */
  reconnectNow() {
    if (this.phase !== "closed") return;
    this.stopped = false;
    this.authFailed = false;
    clearTimeout(this.timers.reconnect);
    this._open();
  }

  /** Drop the socket as if the network failed (the normal reconnect logic follows). */
  dropForTesting() {
    if (this.ws) this._onClose({ code: 4999, reason: "dropped by the dashboard" });
  }

  get connected() {
    return this.phase === "open";
  }

  /** The server's wall clock now (Unix seconds), as estimated from the pings. */
  serverNow() {
    return Date.now() / 1000 + this.clockOffset;
  }

  /**
   * Send a command; resolves with its result, rejects with a RequestError.
   * `deadline` (ms): the server must receive it within that time or refuse it (`not_after`),
   * and it fails here as "unconfirmed" if no reply came by then (unless `timeout` is longer).
   * Never sent while there is no contact with the server ("not_sent").
   */
  request(cmd, args = {}, { timeout, deadline } = {}) {
    if (this.phase !== "open" || !this.ws) {
      return Promise.reject(new RequestError("not_sent", "not sent: not connected to the server"));
    }
    if (!this.fresh && cmd !== "ping") {
      return Promise.reject(new RequestError("not_sent",
        `not sent: no contact with the server since ${clock(this.lastContact)}`));
    }
    const id = this.nextId++;
    const message = { v: 1, type: "request", id, cmd, args };
    const wait = timeout ?? deadline ?? REQUEST_TIMEOUT_MS;
    let notAfter = null;
    if (deadline) {
      notAfter = this.serverNow() + deadline / 1000;
      message.not_after = notAfter;
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        if (notAfter !== null && wait <= deadline) {
          const by = clock(Date.now() - (this.serverNow() - notAfter) * 1000);
          reject(new RequestError("unconfirmed",
            `${cmd} was not confirmed within ${(deadline / 1000).toFixed(1)} s; the server refuses it if it arrives after ${by}`));
        } else {
          reject(new RequestError("timeout", `no reply to ${cmd} within ${Math.round(wait / 1000)} s`));
        }
      }, wait);
      this.pending.set(id, { resolve, reject, timer, cmd });
      try {
        this.ws.send(JSON.stringify(message));
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new RequestError("connection_lost", `could not send ${cmd}: ${err.message}`));
      }
    });
  }

  // --- internals -----------------------------------------------------------------

  _setState(state, info = {}) {
    this.state = state;
    if (this.h.onState) this.h.onState(state, info);
  }

  _clearTimers() {
    clearTimeout(this.timers.reconnect);
    clearTimeout(this.timers.hello);
    clearInterval(this.timers.heartbeat);
    clearInterval(this.timers.liveness);
    this.reconnectAt = null;
  }

  /** Heard from the server: note the time, and say so if it had gone quiet. */
  _contact() {
    this.lastContact = Date.now();
    if (!this.fresh) {
      this.fresh = true;
      if (this.h.onContact) this.h.onContact(true, this.lastContact);
    }
  }

  /** The browser says the network is gone: no need to wait for the silence. */
  networkLost() {
    if (this.phase === "open" && this.fresh) this._goneQuiet();
  }

  _goneQuiet() {
    this.fresh = false;
    if (this.h.onContact) this.h.onContact(false, this.lastContact);
  }

  _checkLiveness() {
    if (this.phase !== "open") return;
    const silent = Date.now() - (this.lastContact || 0);
    if (this.fresh && silent > STALE_MS) this._goneQuiet();
    if (silent > DEAD_MS) this._onClose({ code: 4997, reason: `no contact with the server since ${clock(this.lastContact)}` });
  }

  _open() {
    this._clearTimers();
    this._setState(this.everConnected ? "reconnecting" : "connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._scheduleReconnect(`cannot open ${this.url}: ${err.message}`);
      return;
    }
    this.ws = ws;
    this.phase = "hello";
    ws.onmessage = (ev) => this._onFrame(ev.data);
    ws.onclose = (ev) => this._onClose(ev);
    ws.onerror = () => { /* a close event always follows */ };
    this.timers.hello = setTimeout(() => {
      if (this.ws === ws && this.phase !== "open") {
        this._onClose({ code: 4998, reason: "the server did not complete the handshake" });
      }
    }, HELLO_TIMEOUT_MS);
  }

  _onFrame(raw) {
    if (this.phase === "open") this._contact();
    if (this.h.onFrame) this.h.onFrame();
    let message;
    try {
      message = JSON.parse(raw);
    } catch (_) {
      if (this.h.onStrayError) this.h.onStrayError(new RequestError("invalid_json", "the server sent a frame that is not JSON"));
      return;
    }
    const items = Array.isArray(message) ? message : [message];
    for (const item of items) {
      if (item && typeof item === "object") this._onMessage(item);
    }
  }

  _onMessage(msg) {
    if (this.phase === "hello") {
      if (msg.type !== "hello") return;
      this.hello = msg;
      if (this.probe && msg.auth !== "none") {
        this.stop("the server needs a token");
        if (this.h.onNeedsToken) this.h.onNeedsToken(msg);
        return;
      }
      let restarted = false;
      if (this.sessionId && msg.session_id && msg.session_id !== this.sessionId) {
        restarted = true; // new server process: its seq numbers start over
        this.lastSeq = null;
      }
      this.serverRestarted = restarted;
      this.sessionId = msg.session_id || this.sessionId;
      this.phase = "auth";
      const token = this.token();
      this.ws.send(JSON.stringify({
        v: 1, type: "auth", token: token ? token : null, role: this.role(),
        since: this.lastSeq, client: this.client,
      }));
      return;
    }
    if (this.phase === "auth") {
      if (msg.type === "welcome") {
        clearTimeout(this.timers.hello);
        this.phase = "open";
        this.welcome = msg;
        this.probe = false;
        const info = { replay: msg.replay, restarted: this.serverRestarted, reconnected: this.everConnected };
        if (this.lastSeq === null) this.lastSeq = msg.last_seq ?? 0;
        this.attempt = 0;
        this.everConnected = true;
        this.lastContact = Date.now();
        this.fresh = true;
        if (this.h.onContact) this.h.onContact(true, this.lastContact);
        this._setState("connected", info);
        if (this.h.onWelcome) this.h.onWelcome(msg, info);
        this.timers.heartbeat = setInterval(() => this._heartbeat(), HEARTBEAT_MS);
        this.timers.liveness = setInterval(() => this._checkLiveness(), LIVENESS_CHECK_MS);
        this._heartbeat();
        return;
      }
      if (msg.type === "reply" && msg.ok === false) {
        const err = msg.error || {};
        this.authFailed = true;
        this._authError = new RequestError(err.code || "unauthorized", err.message || "authentication failed", err.details);
        return;
      }
      if (msg.type === "goodbye") this._goodbye = msg;
      return;
    }
    // phase open
    switch (msg.type) {
      case "event": {
        if (typeof msg.seq === "number") {
          if (this.lastSeq !== null && msg.seq <= this.lastSeq) return; // replay overlap
          this.lastSeq = msg.seq;
        }
        if (this.h.onEvent) this.h.onEvent(msg);
        return;
      }
      case "reply": {
        const entry = this.pending.get(msg.id);
        if (entry) {
          this.pending.delete(msg.id);
          clearTimeout(entry.timer);
          if (msg.ok) entry.resolve(msg.result);
          else {
            const err = msg.error || {};
            entry.reject(new RequestError(err.code, err.message || "request failed", err.details));
          }
        } else if (msg.ok === false && this.h.onStrayError) {
          const err = msg.error || {};
          this.h.onStrayError(new RequestError(err.code, err.message || "error from server", err.details));
        }
        return;
      }
      case "gap":
        if (this.h.onGap) this.h.onGap(msg);
        return;
      case "alert":
        if (this.h.onAlert) this.h.onAlert(msg);
        return;
      case "goodbye":
        this._goodbye = msg;
        if (this.h.onGoodbye) this.h.onGoodbye(msg);
        return;
      default:
        return;
    }
  }

  async _heartbeat() {
    // one ping at a time: a frozen server must not find a pile of them when it wakes
    if (this.phase !== "open" || this.pinging) return;
    this.pinging = true;
    const t0 = performance.now();
    const local0 = Date.now();
    try {
      const result = await this.request("ping", {}, { timeout: DEAD_MS });
      const rtt = performance.now() - t0;
      if (result && typeof result.time === "number") this.clockOffset = result.time - (local0 + rtt / 2) / 1000;
      if (this.h.onPong) this.h.onPong(result, rtt, local0 + rtt / 2);
    } catch (_) {
      // silence is handled by _checkLiveness, which sees every frame, not only pongs
    } finally {
      this.pinging = false;
    }
  }

  _failPending(error) {
    const pending = this.pending;
    this.pending = new Map();
    for (const entry of pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
  }

  _onClose(ev) {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(); } catch (_) { /* ignore */ }
    const wasOpen = this.phase === "open";
    this.phase = "closed";
    clearTimeout(this.timers.hello);
    clearInterval(this.timers.heartbeat);
    clearInterval(this.timers.liveness);
    this.pinging = false;
    if (wasOpen && this.fresh) this._goneQuiet();
    // Requests not answered yet die with this socket: nothing is resent on the next one.
    this._failPending(new RequestError("connection_lost", "the connection closed before the reply arrived"));
    const goodbye = this._goodbye;
    this._goodbye = null;
    if (this.stopped) return;
    if (ev.code === CLOSE.AUTH_FAILED || this.authFailed) {
      this.stopped = true;
      const error = this._authError || new RequestError("unauthorized", (goodbye && goodbye.reason) || "authentication failed");
      this._authError = null;
      this._setState("disconnected", { reason: error.message, authFailed: true });
      if (this.h.onAuthFailed) this.h.onAuthFailed(error);
      return;
    }
    const reason = (goodbye && goodbye.reason) || ev.reason || (wasOpen ? "connection lost" : "cannot reach the server");
    if (this.probe) {
      this.stopped = true;
      this._setState("disconnected", { reason });
      if (this.h.onNeedsToken) this.h.onNeedsToken(null);
      return;
    }
    this._scheduleReconnect(reason);
  }

  _scheduleReconnect(reason) {
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.reconnectAt = Date.now() + delay;
    this._setState("reconnecting", { reason, delay, attempt: this.attempt });
    this.timers.reconnect = setTimeout(() => {
      this.reconnectAt = null;
      if (!this.stopped) this._open();
    }, delay);
  }
}
