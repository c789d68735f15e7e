// The chat page of `llmkit serve`: talks to this server's own OpenAI-compatible API.
//
// Safety rules this file keeps:
// - Model output, reasoning, model names and error messages reach the page only through
//   textContent / text nodes, never as HTML (a reply with <script> or onerror= stays text).
// - The API key lives in this page's memory: sent as an Authorization header, never put in
//   a URL, in storage or in the DOM outside its password field.
// - Only same-origin requests (the server's Content-Security-Policy enforces it too).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    model: $("model"), reset: $("reset"), system: $("system"), temperature: $("temperature"),
    maxTokens: $("max-tokens"), keyRow: $("key-row"), apiKey: $("api-key"), useKey: $("use-key"),
    error: $("error"), messages: $("messages"), prompt: $("prompt"), send: $("send"), stop: $("stop"),
  };
  const state = {
    apiKey: "",
    conversation: [], // {role, content} sent back with every request
    controller: null, // the AbortController of the reply being streamed
    ready: false,
  };

  // ------------------------------------------------------------------ errors and status

  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.textContent = "";
    ui.error.hidden = true;
  }

  function showKeyField() {
    ui.keyRow.hidden = false;
    ui.apiKey.focus();
  }

  function authHeaders() {
    const headers = { "Content-Type": "application/json" };
    if (state.apiKey) headers.Authorization = "Bearer " + state.apiKey;
    return headers;
  }

  // The text to show for a failed HTTP reply (the body is OpenAI's {"error": {...}}).
  async function describeFailure(response) {
    let detail = "";
    try {
      const body = await response.json();
      detail = (body && body.error && body.error.message) || "";
    } catch (_) { /* not JSON: the status says enough */ }
    const suffix = detail ? ": " + detail : "";
    if (response.status === 401) {
      showKeyField();
      return "This server needs a valid API key (401" + suffix + "). Enter it in the API key field.";
    }
    if (response.status === 429) {
      const after = response.headers.get("Retry-After");
      return "The server is busy (429" + suffix + ")." + (after ? " Retry after " + after + " s." : "");
    }
    return "The server answered " + response.status + suffix;
  }

  function updateButtons() {
    const busy = state.controller !== null;
    document.body.dataset.busy = busy ? "true" : "false";
    ui.send.disabled = busy || !state.ready;
    ui.stop.disabled = !busy;
    ui.model.disabled = busy || !state.ready;
  }

  // ------------------------------------------------------------------ models

  async function loadModels() {
    clearError();
    state.ready = false;
    updateButtons();
    let response;
    try {
      response = await fetch("/v1/models", { headers: authHeaders(), cache: "no-store" });
    } catch (err) {
      showError("Cannot reach the server: " + err.message);
      return;
    }
    if (!response.ok) {
      showError(await describeFailure(response));
      return;
    }
    const body = await response.json();
    const previous = ui.model.value;
    ui.model.replaceChildren();
    for (const card of body.data || []) {
      ui.model.append(new Option(card.id, card.id)); // Option(text, value): text, not HTML
    }
    if ([...ui.model.options].some((o) => o.value === previous)) ui.model.value = previous;
    state.ready = ui.model.options.length > 0;
    if (!state.ready) showError("The server lists no model.");
    document.body.dataset.ready = state.ready ? "true" : "false";
    updateButtons();
  }

  // ------------------------------------------------------------------ rendering

  // Text with ``` fences: the fenced parts go in <pre><code>, everything as text nodes. The
  // fences stay in the text, so the element's textContent is exactly the model's reply.
  function renderText(container, text) {
    const nodes = [];
    const fence = /```[^\n`]*\n[\s\S]*?(?:```|$)/g;
    let last = 0;
    for (const match of text.matchAll(fence)) {
      if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      code.textContent = match[0];
      pre.append(code);
      nodes.push(pre);
      last = match.index + match[0].length;
    }
    if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
    container.replaceChildren(...nodes);
  }

  function scrollToEnd() {
    const box = ui.messages;
    box.scrollTop = box.scrollHeight;
  }

  function addMessage(role, text) {
    const root = document.createElement("div");
    root.className = "msg " + role;
    const label = document.createElement("div");
    label.className = "role";
    label.textContent = role;
    const content = document.createElement("div");
    content.className = "content";
    renderText(content, text);
    root.append(label, content);
    ui.messages.append(root);
    scrollToEnd();
    return root;
  }

  // The assistant's message while it streams: text and reasoning accumulate here and are
  // drawn at most once per frame.
  class Reply {
    constructor() {
      this.root = addMessage("assistant", "");
      this.root.dataset.state = "streaming";
      this.content = this.root.querySelector(".content");
      this.details = document.createElement("details");
      this.details.className = "reasoning";
      this.details.hidden = true;
      const summary = document.createElement("summary");
      summary.textContent = "Reasoning";
      this.reasoningBox = document.createElement("div");
      this.reasoningBox.className = "reasoning-text";
      this.details.append(summary, this.reasoningBox);
      this.root.insertBefore(this.details, this.content);
      this.note = document.createElement("div");
      this.note.className = "note";
      this.root.append(this.note);
      this.text = "";
      this.reasoning = "";
      this.pending = false;
    }

    addText(piece) {
      if (!piece) return;
      if (!this.text && this.reasoning) this.details.open = false; // the answer starts
      this.text += piece;
      this.schedule();
    }

    addReasoning(piece) {
      if (!piece) return;
      if (!this.reasoning && !this.text) this.details.open = true; // shown while it arrives
      this.reasoning += piece;
      this.details.hidden = false;
      this.schedule();
    }

    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => this.draw());
    }

    draw() {
      this.pending = false;
      renderText(this.content, this.text);
      this.reasoningBox.textContent = this.reasoning;
      scrollToEnd();
    }

    end(status, note) {
      this.draw();
      this.root.dataset.state = status;
      this.note.textContent = note || "";
    }
  }

  // ------------------------------------------------------------------ streaming

  class StreamError extends Error {}

  // Reads an SSE body into `reply`; true when the server sent [DONE].
  async function readEvents(response, reply) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") return true;
        let event;
        try {
          event = JSON.parse(data);
        } catch (_) {
          throw new StreamError("the server sent an event that is not JSON");
        }
        if (event.error) throw new StreamError(event.error.message || "the server failed mid-reply");
        const choice = (event.choices || [])[0];
        if (!choice) continue; // the usage chunk
        const delta = choice.delta || {};
        reply.addReasoning(delta.reasoning_content);
        reply.addText(delta.content);
      }
    }
  }

  function requestBody() {
    const messages = [];
    const system = ui.system.value.trim();
    if (system) messages.push({ role: "system", content: system });
    messages.push(...state.conversation);
    const body = { model: ui.model.value, messages, stream: true };
    if (ui.temperature.value !== "") body.temperature = Number(ui.temperature.value);
    if (ui.maxTokens.value !== "") body.max_tokens = Number(ui.maxTokens.value);
    return body;
  }

  async function send() {
    const text = ui.prompt.value;
    if (!text.trim() || state.controller || !state.ready) return;
    clearError();
    const userMessage = addMessage("user", text);
    state.conversation.push({ role: "user", content: text });
    ui.prompt.value = "";
    const reply = new Reply();
    const controller = new AbortController();
    state.controller = controller;
    updateButtons();
    const forget = () => {
      // Nothing came back: take the message back into the prompt box, to send again.
      state.conversation.pop();
      userMessage.remove();
      reply.root.remove();
      if (!ui.prompt.value) ui.prompt.value = text;
    };
    let outcome = "done";
    let note = "";
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: authHeaders(),
        body: JSON.stringify(requestBody()),
        signal: controller.signal,
        cache: "no-store",
      });
      if (!response.ok) {
        forget();
        showError(await describeFailure(response));
        return;
      }
      const type = response.headers.get("Content-Type") || "";
      if (type.startsWith("text/event-stream")) {
        if (!(await readEvents(response, reply))) {
          outcome = "error";
          note = "The connection dropped before the reply was complete.";
        }
      } else {
        const whole = await response.json().catch(() => null);
        const message = whole && whole.choices && whole.choices[0] && whole.choices[0].message;
        if (!message) throw new StreamError("the server's reply holds no message");
        reply.addReasoning(message.reasoning_content);
        reply.addText(message.content);
      }
    } catch (err) {
      if (controller.signal.aborted) {
        outcome = "stopped";
        note = "Stopped.";
      } else if (err instanceof StreamError) {
        outcome = "error";
        note = "The server failed mid-reply: " + err.message;
      } else {
        outcome = "error";
        note = "The connection dropped: " + err.message;
      }
    } finally {
      state.controller = null;
      updateButtons();
    }
    if (!reply.root.isConnected) return;
    if (outcome === "error") showError(note);
    if (reply.text || reply.reasoning) {
      // What was received stays in the conversation, as the model's turn.
      state.conversation.push({ role: "assistant", content: reply.text });
    } else if (outcome !== "done") {
      state.conversation.pop(); // no answer to this message: it is not sent again
    }
    reply.end(outcome, note);
  }

  function stop() {
    if (state.controller) state.controller.abort(); // the server then stops generating
  }

  function reset() {
    stop();
    state.conversation = [];
    ui.messages.replaceChildren();
    clearError();
    ui.prompt.focus();
  }

  function useKey() {
    state.apiKey = ui.apiKey.value.trim();
    loadModels();
  }

  // ------------------------------------------------------------------ wiring

  ui.send.addEventListener("click", send);
  ui.stop.addEventListener("click", stop);
  ui.reset.addEventListener("click", reset);
  ui.useKey.addEventListener("click", useKey);
  ui.apiKey.addEventListener("keydown", (event) => {
    if (event.key === "Enter") useKey();
  });
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  loadModels();
})();
