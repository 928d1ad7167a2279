// The API is the front end's only data source. Errors keep the server's message.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
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

async function request(url, init) {
  let response;
  try {
    response = await fetch(url, { ...init, headers: { ...init.headers, Accept: "application/json" } });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", `The server did not answer (${error.message}).`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const err = body?.error ?? {};
    throw new ApiError(response.status, err.code ?? "http_error", err.message ?? `HTTP ${response.status}`);
  }
  return body;
}
