// The experiment list and the expInfo form that starts a run.

import { $, h, setFieldError, clearFieldError } from "./dom.js";
import { app } from "./state.js";
import { expInfoValue, formatCell } from "./format.js";
import { toast, describeError } from "./toast.js";
import { command, updateControls } from "./controls.js";

// Builder's "|hid" fields (the flag is stripped before they reach us); filled in by the session.
const HIDDEN_FIELDS = new Set(["date", "expName", "expVersion", "psychopyVersion"]);
const REQUIRED_FIELDS = new Set(["participant"]);

export function renderExperiments() {
  const container = $("exp-list");
  const experiments = [...app.experiments.values()].sort((a, b) => a.key.localeCompare(b.key));
  if (!experiments.length) {
    container.replaceChildren(h("p", { class: "help" }, "No experiments found in the session folder."));
    $("run-form").hidden = true;
    app.selectedKey = null;
    updateControls();
    return;
  }
  if (!app.selectedKey || !app.experiments.has(app.selectedKey)) {
    app.selectedKey = app.key && app.experiments.has(app.key) ? app.key : experiments[0].key;
  }
  const meta = (exp) => h("span", { class: "exp-meta" }, [exp.kind, exp.path].filter(Boolean).join(" · "));
  if (app.role === "controller") {
    const fieldset = h("fieldset", { class: "exp-choices" },
      h("legend", { class: "sr-only" }, "Choose an experiment"),
      experiments.map((exp) => {
        const id = `exp-${exp.key.replace(/[^A-Za-z0-9_-]/g, "_")}`;
        const input = h("input", { type: "radio", name: "experiment", id, value: exp.key });
        input.checked = exp.key === app.selectedKey;
        input.addEventListener("change", () => {
          if (!input.checked) return;
          app.selectedKey = exp.key;
          buildForm();
          updateControls();
        });
        const metaEl = meta(exp);
        metaEl.id = `${id}-meta`;
        input.setAttribute("aria-describedby", metaEl.id);
        return h("div", { class: "exp-option" }, input,
          h("span", { class: "exp-text" }, h("label", { class: "exp-name", for: id }, exp.key), metaEl));
      }));
    container.replaceChildren(fieldset);
    if (app.formKey !== app.selectedKey) buildForm();
    $("run-form").hidden = false;
  } else {
    container.replaceChildren(h("ul", { class: "exp-plain" },
      experiments.map((exp) => h("li", {}, h("span", { class: "exp-name" }, exp.key), " ", meta(exp)))));
    $("run-form").hidden = true;
  }
  updateControls();
}

let fieldCounter = 0;

function fieldKind(value) {
  if (typeof value === "boolean") return "bool";
  if (typeof value === "number") return "number";
  if (Array.isArray(value)) return "choice";
  return "text";
}

function makeField(name, value) {
  const id = `xi-${++fieldCounter}`;
  const kind = fieldKind(value);
  const required = REQUIRED_FIELDS.has(name);
  const errorId = `${id}-error`;
  let input;
  if (kind === "bool") {
    input = h("input", { type: "checkbox", id, "aria-describedby": errorId });
    input.checked = value;
  } else if (kind === "choice") {
    input = h("select", { id, "aria-describedby": errorId },
      value.map((option, i) => h("option", { value: String(i) }, formatCell(option))));
  } else {
    input = h("input", {
      type: "text", id, autocomplete: "off", spellcheck: "false", "aria-describedby": errorId,
      inputmode: kind === "number" ? "decimal" : null, "aria-required": required ? "true" : null,
    });
    input.value = value === null || value === undefined ? "" : String(value);
  }
  input.dataset.xiName = name;
  input.dataset.xiKind = kind;
  input.dataset.xiDefault = JSON.stringify(value);
  input.addEventListener("input", () => clearFieldError(input));
  const label = h("label", { for: id }, name, required ? h("span", { class: "req" }, " (required)") : null,
    kind === "number" ? h("span", { class: "help-inline" }, " number") : null);
  const wrap = h("div", { class: kind === "bool" ? "field field-check" : "field" });
  if (kind === "bool") wrap.append(input, label);
  else wrap.append(label, input);
  wrap.append(h("p", { id: errorId, class: "field-error" }));
  return wrap;
}

function buildForm() {
  const exp = app.experiments.get(app.selectedKey);
  app.formKey = app.selectedKey;
  $("expinfo-key").textContent = app.selectedKey || "";
  const visible = [], hidden = [];
  const info = (exp && exp.exp_info) || {};
  for (const [name, value] of Object.entries(info)) {
    (HIDDEN_FIELDS.has(name) ? hidden : visible).push(makeField(name, value));
  }
  $("expinfo-fields").replaceChildren(...(visible.length ? visible : [h("p", { class: "help" }, "This experiment has no expInfo fields.")]));
  $("expinfo-hidden-fields").replaceChildren(...hidden);
  $("expinfo-hidden").hidden = !hidden.length;
  $("expinfo-extra").replaceChildren();
  $("run-form-error").textContent = "";
  clearFieldError($("run-seed"));
}

function addExtraField() {
  const n = ++fieldCounter;
  const nameId = `xf-${n}-name`, valueId = `xf-${n}-value`, errorId = `xf-${n}-error`;
  const name = h("input", { type: "text", id: nameId, autocomplete: "off", spellcheck: "false", "aria-describedby": errorId });
  const value = h("input", { type: "text", id: valueId, autocomplete: "off" });
  name.dataset.extra = "name";
  value.dataset.extra = "value";
  name.addEventListener("input", () => clearFieldError(name));
  const remove = h("button", { type: "button", class: "ghost small", "aria-label": `Remove extra field ${n}` }, "Remove");
  const row = h("div", { class: "extra-field", "data-extra-row": "" },
    h("div", { class: "field" }, h("label", { for: nameId }, "Field name"), name),
    h("div", { class: "field" }, h("label", { for: valueId }, "Value"), value),
    remove,
    h("p", { id: errorId, class: "field-error" }));
  remove.addEventListener("click", () => { row.remove(); $("add-field").focus(); });
  $("expinfo-extra").append(row);
  name.focus();
}
$("add-field").addEventListener("click", addExtraField);

/** The expInfo to send, or null after marking the invalid fields. */
function collectForm() {
  const form = $("run-form");
  const values = {};
  const invalid = [];
  const names = new Set();
  for (const input of form.querySelectorAll("[data-xi-name]")) {
    const name = input.dataset.xiName;
    const kind = input.dataset.xiKind;
    const original = JSON.parse(input.dataset.xiDefault);
    names.add(name);
    clearFieldError(input);
    let value;
    if (kind === "bool") value = input.checked;
    else if (kind === "choice") value = original[Number(input.value)];
    else if (kind === "number") {
      const text = input.value.trim();
      if (text === "" || !Number.isFinite(Number(text))) {
        setFieldError(input, `${name} must be a number.`);
        invalid.push(input);
        continue;
      }
      value = Number(text);
    } else {
      value = input.value;
      if (REQUIRED_FIELDS.has(name) && value.trim() === "") {
        setFieldError(input, `Enter the ${name}.`);
        invalid.push(input);
        continue;
      }
    }
    if (HIDDEN_FIELDS.has(name) && JSON.stringify(value) === JSON.stringify(kind === "choice" ? original[0] : original)) continue;
    values[name] = value;
  }
  for (const row of form.querySelectorAll("[data-extra-row]")) {
    const nameInput = row.querySelector('[data-extra="name"]');
    const valueInput = row.querySelector('[data-extra="value"]');
    clearFieldError(nameInput);
    const name = nameInput.value.trim();
    if (!name && !valueInput.value.trim()) continue;
    let problem = null;
    if (!name) problem = "Give this field a name (empty names are not allowed).";
    else if (name.includes("|")) problem = "Field names cannot contain “|”.";
    else if (names.has(name)) problem = `“${name}” is already a field.`;
    if (problem) {
      setFieldError(nameInput, problem);
      invalid.push(nameInput);
      continue;
    }
    names.add(name);
    values[name] = expInfoValue(valueInput.value);
  }
  const seedInput = $("run-seed");
  clearFieldError(seedInput);
  let seed = null;
  const seedText = seedInput.value.trim();
  if (seedText) {
    if (!/^\d+$/.test(seedText) || Number(seedText) > 4294967295) {
      setFieldError(seedInput, "The seed must be a whole number from 0 to 4294967295.");
      invalid.push(seedInput);
    } else seed = Number(seedText);
  }
  if (invalid.length) {
    $("run-form-error").textContent = `Please fix ${invalid.length} field${invalid.length === 1 ? "" : "s"} above.`;
    invalid[0].focus();
    return null;
  }
  $("run-form-error").textContent = "";
  return { exp_info: values, seed };
}

$("run-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if ($("btn-run").disabled) return;
  const collected = collectForm();
  if (!collected) return;
  const key = app.selectedKey;
  const args = { key, exp_info: collected.exp_info };
  if (collected.seed !== null) args.seed = collected.seed;
  if ($("run-dry").checked) args.simulate = {}; // the simulated participant, default policy
  try {
    const result = await command("btn-run", "run", args, `Could not start ${key}`, { timeout: 60000, deadline: 3000 });
    toast("info", `Started ${key}${result && result.run_id ? ` (run ${result.run_id})` : ""}.`);
  } catch (err) {
    $("run-form-error").textContent = `Could not start ${key}: ${describeError(err)}`;
  }
});

