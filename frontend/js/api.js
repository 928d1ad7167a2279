// The API is the front end's only data source. Errors keep the server's message.

export class ApiError extends Error {
  /** `detail`: the error's facts, as the server gives them (an atlas missing lists those `available`). */
  constructor(status, code, message, detail = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

export function getJson(url, { signal, headers } = {}) {
  return request(url, { signal, headers });
}

/** POST one file as the multipart field `file`; the JSON answer, or an ApiError with the server's message. */
export function postFile(url, file, { signal } = {}) {
  const form = new FormData();
  form.append("file", file, file.name || "pasted-image");
  return request(url, { method: "POST", body: form, signal });
}

/** POST a JSON body; the JSON answer, or an ApiError with the server's message. */
export function postJson(url, body, { signal } = {}) {
  return request(url, { method: "POST", body: JSON.stringify(body), signal,
    headers: { "Content-Type": "application/json" } });
}

// A model worker that is starting or restarting answers 503 with Retry-After (app/api/forwarding.py): a GET
// asks again after the time it names (at most RETRY_WAIT_MAX_MS a time), for up to RETRY_WINDOW_MS in all, so a
// page outlives a worker's restart instead of showing its error. Other methods are not repeated.
const RETRY_WINDOW_MS = 60_000;
const RETRY_WAIT_MAX_MS = 5_000;

async function request(url, init) {
  const retryUntil = Date.now() + RETRY_WINDOW_MS;
  let response = await send(url, init);
  while (!init.method && response.status === 503 && response.headers.has("Retry-After") && Date.now() < retryUntil) {
    await sleep(retryWait(response.headers.get("Retry-After")), init.signal);
    response = await send(url, init);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    // Left while the answer was arriving: the caller's abort, not an answer of null (it read null.units).
    if (error.name === "AbortError") throw error;
    if (response.ok) throw new ApiError(response.status, "bad_response", `The server's answer was not JSON (${error.message}).`);
  }
  if (!response.ok) {
    const err = body?.error ?? {};
    throw new ApiError(response.status, err.code ?? "http_error", err.message ?? `HTTP ${response.status}`,
      err.detail ?? {});
  }
  return body;
}

async function send(url, init) {
  try {
    return await fetch(url, { ...init, headers: { ...init.headers, Accept: "application/json" } });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", `The server did not answer (${error.message}).`);
  }
}

/** Milliseconds to wait for a Retry-After of delay-seconds (an HTTP date, or nonsense, waits a second). */
export function retryWait(header) {
  const seconds = /^\d+$/.test(header.trim()) ? Number(header) : 1;
  return Math.min(seconds * 1000, RETRY_WAIT_MAX_MS);
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
  });
}
