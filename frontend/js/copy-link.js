// "Copy link", shared by every page that has one. The clipboard API exists only in a secure context, so
// over plain http on a LAN host the link goes by the older copy command on a selected field; where that
// fails too, the link is shown selected in a field, to copy by hand. The user can always take the link.

import { html } from "./dom.js";

const SHOWN_MS = 2000;

/** Wire `button` to copy `url()` (the page's address by default) until `signal` aborts. */
export function mountCopyLink(button, { signal, url = () => location.href }) {
  const label = button.textContent;
  let timer = null;
  button.addEventListener("click", async () => {
    const link = url();
    button.parentElement.querySelector(".copy-fallback")?.remove();
    clearTimeout(timer);
    if (await copyText(link)) {
      button.textContent = "Link copied";
      timer = setTimeout(() => { button.textContent = label; }, SHOWN_MS);
    } else {
      button.textContent = label;
      showLink(button, link, signal);
    }
  }, { signal });
  signal.addEventListener("abort", () => clearTimeout(timer));
}

/** Put `text` on the clipboard: true when done. */
export async function copyText(text) {
  if (window.isSecureContext && navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // refused (a permission, a document without focus): the copy command below may still work
    }
  }
  return copyByCommand(text);
}

function copyByCommand(text) {
  const field = document.createElement("textarea");
  field.value = text;
  field.readOnly = true;  // no on-screen keyboard on phones
  field.setAttribute("aria-hidden", "true");
  field.style.cssText = "position: fixed; top: 0; left: 0; width: 1px; height: 1px; opacity: 0;";
  const focused = document.activeElement;
  document.body.append(field);
  field.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  field.remove();
  focused?.focus?.({ preventScroll: true });
  return copied;
}

// The link in a selected, read-only field beside the button; Escape or leaving it puts it away.
function showLink(button, link, signal) {
  const box = document.createElement("div");
  box.className = "copy-fallback";
  const mac = /Mac|iPhone|iPad/.test(navigator.platform);
  box.innerHTML = html`<label>This browser would not copy here: press ${mac ? "⌘C" : "Ctrl+C"} to copy the link
    <input type="text" readonly value="${link}" spellcheck="false"></label>`;
  button.after(box);
  const field = box.querySelector("input");
  field.focus();
  field.select();
  const close = () => box.remove();
  field.addEventListener("keydown", (event) => {
    if (event.key === "Escape") button.focus();  // the field's blur puts it away
  }, { signal });
  field.addEventListener("blur", close, { signal });
}
