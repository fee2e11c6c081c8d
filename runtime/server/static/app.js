// thinkling playground: one page, no build step, no network beyond this server.
// It speaks the same OpenAI-compatible API as any app: GET /v1/models, and
// POST /v1/chat/completions with stream: true, read as server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];  // the conversation, sent with each request when "conversation" is ticked
let controller = null;  // AbortController of the reply in flight

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function status(text) { $("status").textContent = text; }

async function loadModels() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
    const select = $("model");
    select.replaceChildren(...body.data.map((m) => new Option(m.id, m.id)));
    status(`ready: ${body.data.map((m) => m.id).join(", ")}`);
  } catch (e) {
    status("cannot list models: " + e.message);
  }
}

function fill(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = String(v);
    dl.append(dt, dd);
  }
}

function showDecision(view, d) {
  if (!d) return;
  const num = (x) => (typeof x === "number" ? Number(x.toFixed(3)) : x);
  const score = d.score !== undefined ? `${num(d.score)} vs threshold ${num(d.threshold)}` : undefined;
  fill(view.decision, [["mode", d.mode], ["requested", d.requested], ["stage", d.stage],
    ["score", score], ["budget", d.budget], ["format", d.response_format], ["why", d.reason]]);
}

function showTimings(view, t, clientMs) {
  if (!t) return;
  const tps = t.predicted_per_second ? t.predicted_per_second.toFixed(1) : undefined;
  fill(view.timings, [["TTFT", `${Math.round(t.ttft_ms)} ms`], ["decode", tps && `${tps} tok/s`],
    ["tokens", t.predicted_n], ["total", `${Math.round(t.total_ms)} ms`],
    ["round trip", `${Math.round(clientMs)} ms`]]);
}

function newTurn(question) {
  const node = $("turn").content.firstElementChild.cloneNode(true);
  node.querySelector(".user").textContent = question;
  $("log").append(node);
  node.scrollIntoView({ block: "end" });
  return {
    node, answer: node.querySelector(".answer"), reasoning: node.querySelector(".reasoning"),
    reasoningText: node.querySelector(".reasoning pre"), rtok: node.querySelector(".rtok"),
    decision: node.querySelector(".decision"), timings: node.querySelector(".timings"),
  };
}

function requestBody(messages) {
  const body = { model: $("model").value || undefined, messages, stream: true, think: $("think").value,
    max_tokens: Number($("max-tokens").value) || 256 };
  if ($("budget").value !== "") body.reasoning_budget = Number($("budget").value);
  if ($("deadline").value !== "") body.deadline_ms = Number($("deadline").value);
  return body;
}

// Server-sent events from a fetch body: "data: {...}" lines, blank-line separated.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

async function send(question) {
  const view = newTurn(question);
  const messages = [...($("keep").checked ? history : []), { role: "user", content: question }];
  controller = new AbortController();
  $("send").disabled = true; $("stop").disabled = false;
  const t0 = performance.now();
  let answer = "", reasoning = "";
  try {
    const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(),
      body: JSON.stringify(requestBody(messages)), signal: controller.signal });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error ? `${r.status} ${body.error.message}` : `${r.status} ${r.statusText}`);
    }
    for await (const ev of events(r)) {
      if (ev.error) throw new Error(ev.error.message);
      const choice = ev.choices && ev.choices[0];
      if (!choice) continue;
      const delta = choice.delta || {};
      if (delta.reasoning_content) {
        reasoning += delta.reasoning_content;
        view.reasoning.hidden = false;
        view.reasoning.open = true;
        view.reasoningText.textContent = reasoning;
        view.rtok.textContent = reasoning.length;
      }
      if (delta.content) {
        answer += delta.content;
        view.answer.textContent = answer;
      }
      if (choice.finish_reason) {
        showDecision(view, ev.decision);
        showTimings(view, ev.timings, performance.now() - t0);
        view.node.dataset.finish = choice.native_finish_reason || choice.finish_reason;
      }
    }
    history.push({ role: "user", content: question }, { role: "assistant", content: answer });
    status("");
  } catch (e) {
    view.answer.classList.add("error");
    view.answer.textContent = (answer ? answer + "\n" : "") + (e.name === "AbortError" ? "stopped" : e.message);
    view.node.dataset.finish = "error";
  } finally {
    view.reasoning.open = false;  // collapsed once the answer is there; a click opens it
    controller = null;
    $("send").disabled = false; $("stop").disabled = true;
  }
}

$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("prompt").value.trim();
  if (!q || controller) return;
  $("prompt").value = "";
  send(q);
});
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask").requestSubmit(); }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("key").addEventListener("change", loadModels);
loadModels();
