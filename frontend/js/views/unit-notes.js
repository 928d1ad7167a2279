// The unit page's notes: what people wrote on the unit, and a form to add one unless the server is read-only.
// Text is shown as text (html`` escapes it).

import { addNote, unitNotes } from "../data.js";
import { html } from "../dom.js";
import { atlasQuery } from "../urls.js";

const AUTHOR_KEY = "fovea.noteAuthor";  // the name a note was last signed with, offered again on every unit

function rememberedAuthor() {
  try { return localStorage.getItem(AUTHOR_KEY) ?? ""; } catch { return ""; }  // storage may be turned off
}

function rememberAuthor(name) {
  try { localStorage.setItem(AUTHOR_KEY, name); } catch { /* kept for this note only */ }
}

/** The notes panel: what people wrote on the unit (a channel, or a feature of dictionary `kind`), and a form to
 *  add one unless the server is read-only. */
export async function mountNotes(panel, { modelId, layer, unit, kind, signal }) {
  if (!panel) return;
  const body = panel.querySelector(".notes-body");
  const query = atlasQuery({ kind });
  const show = async () => {
    const found = await unitNotes(modelId, layer, unit, query, { signal });
    body.innerHTML = html`
      ${found.notes.length ? html`<ol class="note-list">${found.notes.map((note) => html`<li>
        <p>${note.text}</p><p class="muted small">${note.author} · ${note.created.replace("T", " ").replace("Z", " UTC")}</p></li>`)}</ol>`
        : html`<p class="muted small">No notes yet.</p>`}
      ${found.writable ? html`<form class="note-form">
        <label>Your label or note <textarea name="text" rows="2" maxlength="${found.max_chars}" required></textarea></label>
        <label>Your name <input name="author" maxlength="80" placeholder="anonymous" value="${rememberedAuthor()}"></label>
        <button type="submit" class="button">Add note</button>
        <p class="error-text small" role="alert"></p></form>`
        : html`<p class="muted small">This Fovea is read-only: notes cannot be added here.</p>`}`;
    body.querySelector(".note-form")?.addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.target;
      const author = form.author.value.trim();
      try {
        await addNote(modelId, layer, unit, query, { text: form.text.value, author: author || "anonymous" }, { signal });
        rememberAuthor(author);
        await show();
      } catch (error) {
        if (error.name !== "AbortError") form.querySelector(".error-text").textContent = error.message;
      }
    }, { signal });
  };
  try {
    await show();
  } catch (error) {
    if (error.name !== "AbortError") body.innerHTML = html`<p class="error-text small">${error.message}</p>`;
  }
}
