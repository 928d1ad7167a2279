// Following a long request: it carries a random token (header X-Progress-Token) and, while it runs, the
// server answers /api/progress/{token} with its task and how many of that task's inputs have run.

import { getJson } from "./api.js";
import { apiUrl } from "./urls.js";

const POLL_MS = 500;

/** 16 random bytes as hex: crypto.getRandomValues works on plain http too, unlike crypto.randomUUID. */
export function progressToken() {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Poll every half second, calling `onProgress` with each answer (a 404, not begun or over, is skipped),
 *  until the returned function is called or `signal` aborts. */
export function followProgress(token, onProgress, signal) {
  const polling = new AbortController();
  const stop = () => polling.abort();
  signal.addEventListener("abort", stop, { once: true });
  let timer = null;
  const poll = async () => {
    try {
      const found = await getJson(apiUrl.progress(token), { signal: polling.signal });
      if (!polling.signal.aborted) onProgress(found);  // an answer that crossed the request's own
    } catch {
      // not begun yet, over already, or stopped: the request itself reports its outcome
    }
    if (!polling.signal.aborted) timer = setTimeout(poll, POLL_MS);
  };
  timer = setTimeout(poll, POLL_MS);
  polling.signal.addEventListener("abort", () => {
    clearTimeout(timer);
    signal.removeEventListener("abort", stop);
  }, { once: true });
  return stop;
}

/** GET `url` as JSON, the request followed: `onProgress` hears each poll's answer while it runs. */
export async function getJsonFollowed(url, { signal, onProgress }) {
  const token = progressToken();
  const stop = followProgress(token, onProgress, signal);
  try {
    return await getJson(url, { signal, headers: { "X-Progress-Token": token } });
  } finally {
    stop();
  }
}

/** What a progress answer means to a person: the server's words for its task (`note`, empty for quick tasks),
 *  and, once the pace is known, about how long is left. */
export function describeProgress(progress) {
  return progress.note ? `${progress.note}${timeLeft(progress)}` : "";
}

// " · about 40 s left", from the task's pace so far; nothing while the pace is not yet known.
function timeLeft({ done, total, task_seconds: seconds }) {
  if (!(done > 0 && done < total && seconds >= 2)) return "";
  const left = (seconds * (total - done)) / done;
  return left < 90 ? ` · about ${Math.max(1, Math.round(left))} s left` : ` · about ${Math.round(left / 60)} min left`;
}

/** An `onProgress` for a panel that waits: while another request holds the model, it says so in `element`
 *  (a bare "…" would look like a hang). */
export const noteWaiting = (element) => (progress) => {
  const note = describeProgress(progress);
  if (note) element.textContent = `${note[0].toUpperCase()}${note.slice(1)}.`;
};
