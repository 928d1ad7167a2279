// Safe HTML building: every interpolated value is escaped unless wrapped in raw().

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

class Raw {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
}

/** Mark a string as already-safe HTML (the output of html`` or a constant). */
export function raw(text) { return new Raw(text); }

function render(value) {
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return value.map(render).join("");
  return escapeHtml(value);
}

/** Tagged template: html`<p>${userText}</p>` escapes userText; arrays and raw() nest. */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => { out += render(value) + strings[i + 1]; });
  return new Raw(out);
}

/** A server message with its `commands` in backticks, as text with <code> (the rest escaped); a `fovea`
 *  command as runnable() makes it. */
export function withCode(message) {
  return raw(String(message).split("`").map((part, i) => (i % 2 ? `<code>${escapeHtml(runnable(part))}</code>`
    : escapeHtml(part))).join(""));
}

// The settings flags of the server that served the page (app/api/shell.py: its card folders, its data folder).
const SERVER_FLAGS = globalThis.document?.querySelector('meta[name="fovea-cli-flags"]')?.content ?? "";

/** A `fovea` command that acts on a model or its atlases, with the flags that point it at what this server
 *  reads, so that it runs as printed: a model from `--model-dir` is unknown to a bare `fovea index`. */
export function runnable(command, flags = SERVER_FLAGS) {
  return flags && /^fovea (index|dissect|visualize|dictionary)\b/.test(command) ? `${command} ${flags}` : command;
}

export function formatCount(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e4 ? 0 : 1)}k`;
  return String(n);
}
