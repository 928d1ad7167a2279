// Upload an image three ways: drop it on the zone, pick it with the file picker, or paste it anywhere on
// the page. Calls onUploaded(answer) with the server's JSON; errors keep the server's message.

import { postFile } from "./api.js";
import { html } from "./dom.js";
import { apiUrl } from "./urls.js";

export function mountUploadZone(container, { onUploaded, signal, compact = false }) {
  container.innerHTML = html`<div class="upload-zone${compact ? " compact" : ""}" tabindex="0">
    <p><b>Drop an image here</b>, paste one, or
      <label class="button">choose a file<input type="file" accept="image/*" hidden></label></p>
    <p class="muted small">JPEG, PNG, WebP, GIF, BMP or TIFF. Uploads are kept, so links to them keep working.</p>
    <p class="upload-status" role="status" aria-live="polite"></p>
  </div>`;
  const zone = container.querySelector(".upload-zone");
  const status = zone.querySelector(".upload-status");
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
