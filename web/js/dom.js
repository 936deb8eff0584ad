// Tiny DOM helpers. Text from the server always goes in as text, never as HTML.

export const $ = (id) => document.getElementById(id);

/** Create an element: h("td", {class: "num"}, "1.5"). Functions under on* become listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Set text only when it changed (no layout work for the same text). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** Mark a form field invalid and show why in its "-error" description. */
export function setFieldError(input, message) {
  input.setAttribute("aria-invalid", "true");
  const id = (input.getAttribute("aria-describedby") || "").split(/\s+/).find((x) => x.endsWith("-error"));
  if (id && $(id)) $(id).textContent = message;
}

/** Undo setFieldError. */
export function clearFieldError(input) {
  input.removeAttribute("aria-invalid");
  const id = (input.getAttribute("aria-describedby") || "").split(/\s+/).find((x) => x.endsWith("-error"));
  if (id && $(id)) $(id).textContent = "";
}
