// Upload an image three ways: drop it on the zone, pick it with the file picker, or paste it anywhere on
// the page. Calls onUploaded(answer) with the server's JSON; errors keep the server's message.
// The zone is one button for the keyboard and the mouse alike: Enter, Space or a click opens the picker
// (a hidden file input cannot take focus, so a label around one is no control at all).

import { postFile } from "./api.js";
import { html } from "./dom.js";
import { apiUrl } from "./urls.js";

let zones = 0;  // ids that tie each zone to its own hint

export function mountUploadZone(container, { onUploaded, signal, compact = false }) {
  const hint = `upload-hint-${++zones}`;
  container.innerHTML = html`<div class="upload-zone${compact ? " compact" : ""}" role="button" tabindex="0"
      aria-label="Choose an image to upload" aria-describedby="${hint}">
    <p><b>Drop an image here</b>, paste one, or <span class="button" aria-hidden="true">choose a file</span></p>
    <p class="muted small" id="${hint}">JPEG, PNG, WebP, GIF, BMP or TIFF. Uploads are kept, so links to them keep working.</p>
    <input type="file" accept="image/*" hidden tabindex="-1">
  </div>
  <p class="upload-status small" role="status" aria-live="polite"></p>`;
  const zone = container.querySelector(".upload-zone");
  const status = container.querySelector(".upload-status");
  const input = zone.querySelector("input[type=file]");

  const send = async (file) => {
    if (!file) return;
    status.textContent = `Uploading ${file.name || "pasted image"}…`;
    status.classList.remove("error-text");
    try {
      onUploaded(await postFile(apiUrl.images(), file, { signal }));
    } catch (error) {
      if (error.name === "AbortError") return;
      status.textContent = error.message;
      status.classList.add("error-text");
    }
  };

  input.addEventListener("change", () => send(input.files[0]), { signal });
  // The input's own click bubbles here too: it must not open the picker a second time.
  zone.addEventListener("click", (event) => { if (event.target !== input) input.click(); }, { signal });
  zone.addEventListener("keydown", (event) => {
    if (event.target !== zone || (event.key !== "Enter" && event.key !== " ")) return;
    event.preventDefault();  // Space would scroll the page
    input.click();
  }, { signal });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); }, { signal });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"), { signal });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    send(event.dataTransfer.files[0]);
  }, { signal });
  document.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData?.items ?? [])].find((entry) => entry.type.startsWith("image/"));
    if (item) send(item.getAsFile());
  }, { signal });
}
