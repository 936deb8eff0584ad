// Deploy an experiment from this browser: upload a zipped folder, or rescan the session folder.
//
// Both go over the server's deploy channel (a WebSocket at /deploy, see
// liaison/server/upload.py), authenticated with this tab's token. The new experiments
// reach the list through the usual experiment_added events; this card only reports
// what the server did. A card of its own so the dashboard's main module stays as it is.

const TOKEN_KEY = "liaison.token";

function deployUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/deploy`;
}

/** One exchange on the deploy channel: the request, then (for uploads) the bytes; resolves with the result. */
function exchange(request, bytes, onProgress) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(deployUrl());
    ws.binaryType = "arraybuffer";
    let settled = false;
    const finish = (fn, value) => { if (!settled) { settled = true; fn(value); } try { ws.close(); } catch (_) { /* closed */ } };
    ws.onopen = () => ws.send(JSON.stringify({ ...request, token: sessionStorage.getItem(TOKEN_KEY) || "" }));
    ws.onmessage = (message) => {
      let reply;
      try { reply = JSON.parse(message.data); } catch (_) { return finish(reject, new Error("unreadable reply")); }
      if (reply.type === "error") return finish(reject, new Error(`${reply.code}: ${reply.message}`));
      if (reply.type === "done") return finish(resolve, reply.result);
      if (reply.type === "ready" && bytes) {
        const chunk = reply.chunk_bytes || (1 << 20);
        for (let at = 0; at < bytes.byteLength; at += chunk) ws.send(bytes.slice(at, at + chunk));
        onProgress && onProgress("Unpacking…");
      }
    };
    ws.onerror = () => finish(reject, new Error("the deploy connection failed"));
    ws.onclose = (event) => finish(reject, new Error(`the server closed the connection (${event.code})`));
  });
}

function buildCard() {
  const card = document.createElement("section");
  card.id = "deploy";
  card.className = "card controller-only";
  card.setAttribute("aria-labelledby", "deploy-title");
  card.innerHTML = `
    <h2 id="deploy-title">Deploy an experiment</h2>
    <form id="deploy-form" class="stack" novalidate>
      <div class="field">
        <label for="deploy-file">Experiment folder, zipped</label>
        <input id="deploy-file" type="file" accept=".zip,application/zip" aria-describedby="deploy-help">
        <p id="deploy-help" class="help">The .psyexp or .py file with its conditions and stimuli. It is unpacked
          into the session folder and listed at once.</p>
      </div>
      <div class="field">
        <label for="deploy-name">Folder name</label>
        <input id="deploy-name" type="text" autocomplete="off" spellcheck="false">
      </div>
      <label class="choice"><input id="deploy-replace" type="checkbox">
        <span>Replace a folder of that name <span class="help-inline">(the old one is kept aside)</span></span></label>
      <p id="deploy-status" class="help" role="status" aria-live="polite"></p>
      <div>
        <button type="submit" id="btn-deploy">Upload</button>
        <button type="button" id="btn-rescan" class="ghost">Rescan folder</button>
      </div>
    </form>`;
  return card;
}

function describe(list) {
  return list && list.length ? list.map((e) => e.key).join(", ") : "none new";
}

function install() {
  const anchor = document.getElementById("setup");
  if (!anchor || document.getElementById("deploy")) return;
  const card = buildCard();
  anchor.after(card);
  card.hidden = true; // shown by the dashboard once signed in as a controller (.controller-only)
  const $ = (id) => document.getElementById(id);
  const status = (text) => { $("deploy-status").textContent = text; };
  $("deploy-file").addEventListener("change", () => {
    const file = $("deploy-file").files[0];
    if (file && !$("deploy-name").value) $("deploy-name").value = file.name.replace(/\.zip$/i, "");
  });
  $("deploy-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("deploy-file").files[0];
    const name = $("deploy-name").value.trim();
    if (!file) return status("Choose a .zip file first.");
    if (!name) return status("Give the folder a name.");
    $("btn-deploy").disabled = true;
    status(`Uploading ${file.name}…`);
    try {
      const bytes = await file.arrayBuffer();
      const result = await exchange({ type: "push", name, size: bytes.byteLength, replace: $("deploy-replace").checked },
        bytes, status);
      status(`Deployed as ${result.folder}/ (${result.files} files); experiments: ${describe(result.added)}.`);
    } catch (error) {
      status(`Upload refused: ${error.message}`);
    } finally {
      $("btn-deploy").disabled = false;
    }
  });
  $("btn-rescan").addEventListener("click", async () => {
    $("btn-rescan").disabled = true;
    status("Searching the session folder…");
    try {
      const result = await exchange({ type: "rescan" });
      status(`Rescanned: ${describe(result.added)} (${result.experiments} experiments in all).`);
    } catch (error) {
      status(`Rescan failed: ${error.message}`);
    } finally {
      $("btn-rescan").disabled = false;
    }
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", install);
else install();
