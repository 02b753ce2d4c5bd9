// The live page: task table and workers from the server's event stream, queues and dead letters
// from the management API (through our server), a heartbeat, and forms sent without a reload.
//
// Plain JavaScript, no build step. Everything that came from a user or a message is inserted as
// text (textContent), never as HTML: a task body like "<img onerror=...>" stays harmless text.

// The server's names for the paths, statuses and labels the page uses (PAGE_CONFIG in
// api/views.py), rendered into the page: the script spells none of them itself.
const CONFIG = JSON.parse(document.body.dataset.config);
const ROUTES = CONFIG.routes;
const STATUS = CONFIG.statuses;
const METHOD = CONFIG.methods;
const SOURCE = CONFIG.sources;
const ROLE = CONFIG.roles;
const METHOD_LABELS = CONFIG.method_labels;
const WORKFLOW_LABELS = CONFIG.workflow_labels;
const FIELD_LABELS = CONFIG.field_labels; // by the form's input names
const FORM_FIELDS = CONFIG.form_fields; // the JSON API's field names the form calls otherwise
const TABLE_SIZE = CONFIG.table_size; // rows kept, as many as the server's snapshot holds

const QUEUES_EVERY_MS = 2000;
const PING_EVERY_MS = 500;
const PING_TIMEOUT_MS = 1000;
const STALLED_AFTER_MS = 1500; // no answer for this long: the heartbeat turns red
const RECONNECT_MS = 3000; // only if the stream failed for good: EventSource retries by itself
const REFUSED_RETRY_MS = 30000; // the server refused the stream (too many pages): wait longer

// ------------------------------------------------------------------ small helpers

/** An element with attributes and children; strings become text nodes, never markup. */
function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) element.setAttribute(name, value);
  }
  element.append(...children.filter((child) => child !== null && child !== undefined));
  return element;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function badge(method) {
  return el("span", { class: `badge badge-${method}` }, METHOD_LABELS[method] || method);
}

function clockTime(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString("ru-RU", { hour12: false });
}

function seconds(value) {
  return `${value.toFixed(1)} с`;
}

function taskNumbers(tasks) {
  const first = tasks[0].task_num;
  const last = tasks[tasks.length - 1].task_num;
  return first === last ? `№${first}` : `№${first}–${last}`;
}

/** Show a message under a form or panel: kind is "ok", "error" or "wait". */
function say(target, text, kind = "ok") {
  target.textContent = text;
  target.dataset.kind = kind;
}

/** fetch() that answers JSON and never throws: {ok, status, data}, status 0 if unreachable. */
async function fetchJson(url, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  try {
    const response = await fetch(url, { cache: "no-store", ...options, headers });
    const data = await response.json().catch(() => ({}));
    return { ok: response.ok, status: response.status, data };
  } catch (error) {
    return { ok: false, status: 0, data: { error: `сервер не ответил (${error.name})` } };
  }
}

function errorText(data) {
  const label = FIELD_LABELS[FORM_FIELDS[data.field] || data.field];
  // A bad field comes with a Russian message_ru; the page names the field as its form does.
  if (label && data.message_ru) return `${label}: ${data.message_ru}`;
  // Other errors a person can act on (a refused Origin, a full store) say it in Russian too.
  if (data.message_ru) return String(data.message_ru);
  return String(data.error || "неизвестная ошибка");
}

// ------------------------------------------------------------------ task table

/**
 * The task table. The server draws its rows (api/templates/task_row.html): the ones the page
 * opens with, and in <template id="task-row"> one with every optional part. For each task the
 * stream brings, the script clones that one, removes the parts the task lacks and fills in the
 * values: it writes no markup and no words of a row.
 */
class TaskTable {
  constructor(body, rowTemplate, emptyTemplate) {
    this.body = body;
    this.prototype = rowTemplate.content.firstElementChild;
    this.emptyRow = emptyTemplate.content.firstElementChild;
    for (const row of body.querySelectorAll("tr[data-task]")) linkToCeleryView(row);
  }

  /** The snapshot: every row anew, newest first. */
  replaceAll(tasks) {
    this.body.replaceChildren(...tasks.map((task) => this.row(task, false)));
    this.showEmpty();
  }

  /** One task changed or appeared: redraw its row, or insert it in number order. */
  upsert(task) {
    const old = this.body.querySelector(`tr[data-task="${task.task_num}"]`);
    if (task.discarded) {
      // Never sent (the broker was down): the server forgot it, so does the table.
      old?.remove();
      this.showEmpty();
      return;
    }
    const row = this.row(task, true);
    if (old) {
      old.replaceWith(row);
      return;
    }
    this.body.querySelector("tr.empty-row")?.remove();
    const after = [...this.body.rows].find((other) => Number(other.dataset.task) < task.task_num);
    this.body.insertBefore(row, after || null);
    while (this.body.rows.length > TABLE_SIZE) this.body.lastElementChild.remove();
  }

  showEmpty() {
    if (!this.body.rows.length) this.body.append(this.emptyRow.cloneNode(true));
  }

  row(task, fresh) {
    const row = this.prototype.cloneNode(true);
    Object.assign(row.dataset, { task: task.task_num, status: task.status, method: task.method });
    if (fresh) row.classList.add("fresh");
    const parts = rowParts(task);
    for (const part of row.querySelectorAll("[data-part]")) {
      if (!parts[part.dataset.part]) part.remove();
    }
    const values = rowValues(task);
    for (const slot of row.querySelectorAll("[data-value]")) {
      const value = values[slot.dataset.value];
      slot.replaceChildren(...(Array.isArray(value) ? value : [String(value)]));
    }
    row.querySelector(".badge").classList.add(`badge-${task.method}`);
    row.querySelector(".status").classList.add(`status-${task.status}`);
    const workflow = row.querySelector(".workflow");
    if (workflow) workflow.title += task.workflow_id; // after the prototype's "workflow "
    const retry = row.querySelector("[data-next-try]");
    if (retry) retry.dataset.nextTry = task.next_try_at; // ticked every second by main()
    const running = row.querySelector("[data-since]");
    if (running) running.dataset.since = task.created_at; // ticked every second by main()
    linkToCeleryView(row);
    return row;
  }
}

/** Which optional parts of a row (data-part in task_row.html) a task has: the same conditions. */
function rowParts(task) {
  const running = task.status === STATUS.IN_PROGRESS;
  const pending = task.status === STATUS.PENDING;
  return {
    replay: Boolean(task.replay_of),
    beat: task.source === SOURCE.BEAT,
    workflow: Boolean(task.workflow_kind),
    summary: task.role === ROLE.SUMMARY,
    after: Boolean(task.parent),
    redelivered: task.redeliveries > 0,
    times: task.redeliveries > 1,
    retry: Boolean(task.next_try_at),
    "tries-used": !task.next_try_at && task.status === STATUS.ERROR && task.attempts > 1,
    note: Boolean(task.note),
    worker: Boolean(task.worker_id),
    "no-worker-yet": pending && !task.worker_id,
    "worker-unknown": !pending && !task.worker_id,
    running,
    took: !running && task.duration !== null,
    "no-duration": !running && task.duration === null,
  };
}

/** What goes into a row's data-value slots; only the kept parts' slots are read. */
function rowValues(task) {
  return {
    task_num: task.task_num,
    replay_of: task.replay_of,
    workflow_kind: WORKFLOW_LABELS[task.workflow_kind],
    parent: task.parent,
    method: METHOD_LABELS[task.method],
    status: task.status,
    redeliveries: task.redeliveries,
    attempt: task.attempts + 1,
    max_attempts: task.max_attempts,
    wait: secondsUntil(task.next_try_at),
    attempts: task.attempts,
    note: task.note,
    worker_id: breakAfterAt(task.worker_id ?? ""),
    created_at: clockTime(task.created_at),
    elapsed: secondsSince(task.created_at),
    duration: task.duration?.toFixed(1),
  };
}

/** A Celery task's number opens "the task through Celery's eyes" below the table. It works only
 * with the script, so the script makes it a button, on the server's rows too. */
function linkToCeleryView(row) {
  if (row.dataset.method !== METHOD.CELERY) return;
  const number = row.querySelector("[data-value=task_num]");
  number.replaceChildren(el("button", { type: "button", class: "link",
    "data-celery-task": row.dataset.task }, number.textContent));
}

const secondsSince = (time) => Math.max(0, Date.now() / 1000 - time).toFixed(0);
const secondsUntil = (time) => Math.max(0, time - Date.now() / 1000).toFixed(0);

/** A retry's countdown to its next try. */
function tickRetry(note) {
  note.querySelector("[data-value=wait]").textContent = secondsUntil(Number(note.dataset.nextTry));
}

/** A running task's time in the system so far (queued + working). */
function tickDuration(running) {
  running.querySelector("[data-value=elapsed]").textContent =
    secondsSince(Number(running.dataset.since));
}

/** "consumer@host:pid" as text, with a line break allowed after the "@" in a narrow column. */
function breakAfterAt(name) {
  const at = name.indexOf("@") + 1;
  return at ? [name.slice(0, at), el("wbr"), name.slice(at)] : [name];
}

// ------------------------------------------------------------------ workers panel

/** The workers panel: the snapshot's rows, then only the rows that changed or left. */
class WorkerList {
  constructor(list) {
    this.list = list;
    this.workers = new Map(); // worker_id -> row
  }

  replaceAll(workers) {
    this.workers = new Map(workers.map((worker) => [worker.worker_id, worker]));
    this.render();
  }

  apply({ changed, gone }) {
    for (const worker of changed) this.workers.set(worker.worker_id, worker);
    for (const workerId of gone) this.workers.delete(workerId);
    this.render();
  }

  render() {
    if (!this.workers.size) {
      this.list.replaceChildren(
        el("li", { class: "empty" }, "Исполнители появятся, когда возьмут первую задачу."),
      );
      return;
    }
    const names = [...this.workers.keys()].sort();
    this.list.replaceChildren(...names.map((name) => this.item(this.workers.get(name))));
  }

  item(worker) {
    const busy = worker.running.length > 0;
    const doing = busy ? `выполняет ${worker.running.map((n) => `№${n}`).join(", ")}` : "свободен";
    return el(
      "li",
      { "data-worker": worker.worker_id, "data-busy": String(busy) },
      el(
        "div",
        { class: "worker-head" },
        badge(worker.method),
        el("code", {}, worker.worker_id),
        el("span", { class: "finished" }, `готово: ${worker.finished}`),
      ),
      el("span", { class: busy ? "doing busy" : "doing" }, doing),
    );
  }
}

// ------------------------------------------------------------------ event stream

/**
 * Why the server refused the stream outright (EventSource is not told): the same request with
 * fetch, dropped as soon as its answer starts. Null if it is accepted now, or nobody answers.
 */
async function whyStreamRefused() {
  const controller = new AbortController();
  try {
    const response = await fetch(ROUTES.events, {
      signal: controller.signal,
      headers: { Accept: "application/json" },
    });
    if (response.ok) return null;
    return errorText(await response.json().catch(() => ({})));
  } catch {
    return null; // the server is away: an outage, retried as usual
  } finally {
    controller.abort();
  }
}

function connectEvents(table, workers, stateLabel, onTask) {
  const setState = (state, text) => {
    stateLabel.dataset.state = state;
    stateLabel.textContent = text;
  };
  setState("connecting", "подключение…");
  const source = new EventSource(ROUTES.events);
  source.addEventListener("open", () => setState("live", "в реальном времени"));
  source.addEventListener("snapshot", (event) => {
    const snapshot = JSON.parse(event.data);
    table.replaceAll(snapshot.tasks);
    workers.replaceAll(snapshot.workers);
  });
  source.addEventListener("tasks", (event) => {
    for (const task of JSON.parse(event.data)) {
      table.upsert(task);
      onTask(task);
    }
  });
  source.addEventListener("workers", (event) => workers.apply(JSON.parse(event.data)));
  source.addEventListener("error", async () => {
    // The browser reconnects by itself unless the server refused the stream outright.
    if (source.readyState !== EventSource.CLOSED) {
      setState("connecting", "переподключение…");
      return;
    }
    const reason = await whyStreamRefused();
    if (reason === null) {
      setState("offline", "нет связи, повтор…");
      setTimeout(() => connectEvents(table, workers, stateLabel, onTask), RECONNECT_MS);
    } else {
      // Too many open pages (or another refusal): say so and try again later, not at once.
      setState("refused", `${reason} (повтор через ${REFUSED_RETRY_MS / 1000} с)`);
      setTimeout(() => connectEvents(table, workers, stateLabel, onTask), REFUSED_RETRY_MS);
    }
  });
}

// ------------------------------------------------------------------ queues panel

function queueRow(queue, statisticsError) {
  const name = el(
    "td",
    {},
    el("a", { href: queue.url, target: "_blank", rel: "noopener" }, queue.name),
  );
  if (!queue.exists) {
    return el(
      "tr",
      { "data-queue": queue.name },
      name,
      el("td", { colspan: 4, class: "empty" }, "ещё не создана"),
    );
  }
  const number = (value) => el("td", { class: "number" }, value === null ? "…" : String(value));
  const unacked = statisticsError
    ? el("td", { class: "number", title: `Статистика недоступна: ${statisticsError}` }, "—")
    : number(queue.messages_unacknowledged);
  return el(
    "tr",
    { "data-queue": queue.name, "data-ready": queue.messages_ready },
    name,
    number(queue.messages_ready),
    unacked,
    number(queue.consumers),
    el("td", {}, queue.purge_url && queue.messages_ready
      ? el("button", { type: "button", class: "danger small", "data-purge": queue.purge_url,
        "data-name": queue.name, title: "Удалить сообщения, которые ждут в очереди" },
      "Очистить")
      : null),
  );
}

/** The queues panel's "Очистить": empty test_direct or celery, after the user confirms it. */
function purgeOnClick(rows, answer) {
  rows.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-purge]");
    if (!button) return;
    const name = button.dataset.name;
    const question = `Удалить все сообщения, которые ждут в очереди ${name}? ` +
      "Их задачи пропадут из таблицы; задачи, которые уже выполняются, продолжатся.";
    if (!window.confirm(question)) return;
    button.disabled = true;
    say(answer, `Очищаем ${name}…`, "wait");
    const { ok, data } = await fetchJson(button.dataset.purge, { method: "POST" });
    say(
      answer,
      ok
        ? `Очередь ${data.queue}: удалено сообщений — ${data.purged}, ` +
            `задач убрано из таблицы — ${data.discarded}.`
        : `Не получилось: ${errorText(data)}`,
      ok ? "ok" : "error",
    );
  });
}

function renderQueues(rows, errorBox, nodeLine, data) {
  // Which node of RMQ_URL the API publishes through: with a cluster, it moves when one is lost.
  nodeLine.hidden = !data.node;
  if (data.node) {
    const node = document.createElement("code");
    node.textContent = data.node;
    nodeLine.replaceChildren("API публикует через узел ", node);
  }
  errorBox.hidden = data.available;
  rows.closest("table").hidden = !data.available;
  if (!data.available) {
    errorBox.textContent =
      `RabbitMQ недоступен: ${data.error || "нет ответа"}. Остальная страница работает.`;
    rows.replaceChildren();
    return;
  }
  rows.replaceChildren(...data.queues.map((queue) => queueRow(queue, data.statistics_error)));
}

/** Ask our server for the queues every two seconds, one request at a time. */
async function pollQueues(rows, errorBox, nodeLine, deadLetters) {
  for (;;) {
    const { status, data } = await fetchJson(ROUTES.queues);
    // Status 0: our own server is silent (blocked or stopped). Keep the last figures: the
    // heartbeat already says why.
    if (status !== 0) {
      renderQueues(rows, errorBox, nodeLine, data);
      const dead = data.available && data.queues.find((queue) => queue.name === deadLetters.queue);
      if (dead && dead.exists) deadLetters.depthIs(dead.messages_ready);
    }
    await sleep(QUEUES_EVERY_MS);
  }
}

// ------------------------------------------------------------------ dead-letter panel

class DeadLetters {
  constructor(root) {
    this.queue = root.dataset.queue;
    this.list = root.querySelector("#dead-list");
    this.count = root.querySelector("#dead-count");
    this.answer = root.querySelector("#dead-answer");
    this.buttons = {
      replay: root.querySelector("#replay-dead"),
      purge: root.querySelector("#purge-dead"),
      refresh: root.querySelector("#refresh-dead"),
    };
    this.reportedDepth = null;
    this.refreshTimer = null;
    this.buttons.replay.addEventListener("click", () => this.replay());
    this.buttons.purge.addEventListener("click", () => this.purge());
    this.buttons.refresh.addEventListener("click", () => this.refresh());
    this.buttons.refresh.disabled = false;
  }

  /** The queues panel's figure for the dead-letter queue moved (it lags): look again. */
  depthIs(depth) {
    if (this.reportedDepth !== null && depth !== this.reportedDepth) this.refresh();
    this.reportedDepth = depth;
  }

  /** A RabbitMQ task just failed: its message is being dead-lettered. One look for a burst. */
  soon() {
    if (this.refreshTimer !== null) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.refresh();
    }, 700);
  }

  async refresh() {
    const { ok, data } = await fetchJson(ROUTES.dead_letters);
    if (!ok || !data.available) {
      this.count.textContent = "";
      // Replay and purge go over AMQP, not the management API: they may still work.
      this.buttons.replay.disabled = this.buttons.purge.disabled = false;
      this.list.replaceChildren(
        el("li", { class: "panel-error" }, `Не удалось заглянуть в очередь: ${errorText(data)}`),
      );
      return;
    }
    this.count.textContent = data.total ? `(${data.total})` : "";
    this.buttons.replay.disabled = this.buttons.purge.disabled = data.total === 0;
    if (!data.messages.length) {
      this.list.replaceChildren(el("li", { class: "empty" }, "Очередь пуста."));
      return;
    }
    this.list.replaceChildren(...data.messages.map((message) => this.item(message)));
    if (data.total > data.messages.length) {
      this.list.append(
        el("li", { class: "empty" }, `… и ещё ${data.total - data.messages.length}`),
      );
    }
  }

  item(message) {
    const death = message.death;
    const why = death
      ? `${death.reason} в ${death.queue}${death.count > 1 ? ` (×${death.count})` : ""}` +
        (death.time ? `, ${clockTime(death.time)}` : "")
      : "без заголовка x-death";
    const verdict = message.problem
      ? el("span", { class: "problem" }, `не задача: ${message.problem}`)
      : el("span", { class: "replayable" }, `задача №${message.task_num}`);
    return el(
      "li",
      { "data-task": message.task_num ?? "" },
      el("div", { class: "dead-head" }, verdict, el("span", { class: "why" }, why)),
      el("code", { class: "body" }, message.body),
    );
  }

  async replay() {
    this.buttons.replay.disabled = true;
    say(this.answer, "Повторяем…", "wait");
    const { ok, data } = await fetchJson(ROUTES.replay_dead_letters, { method: "POST" });
    if (ok || data.replayed) {
      const parts = [];
      if (data.replayed_count) {
        const pairs = data.replayed.map((r) => `№${r.replay_of} → №${r.task_num}`);
        parts.push(`повторено ${data.replayed_count}: ${pairs.join(", ")}`);
      } else {
        parts.push("повторять нечего");
      }
      if (data.kept_count) parts.push(`оставлено ${data.kept_count} (не задачи)`);
      say(
        this.answer,
        parts.join("; ") + (ok ? "." : `. Ошибка: ${errorText(data)}`),
        ok ? "ok" : "error",
      );
    } else {
      say(this.answer, `Не получилось: ${errorText(data)}`, "error");
    }
    await this.refresh();
  }

  async purge() {
    if (!window.confirm(`Удалить все сообщения из ${this.queue}? Их не вернуть.`)) return;
    const { ok, data } = await fetchJson(ROUTES.purge_dead_letters, { method: "POST" });
    say(
      this.answer,
      ok ? `Удалено сообщений: ${data.purged}.` : `Не получилось: ${errorText(data)}`,
      ok ? "ok" : "error",
    );
    await this.refresh();
  }
}

// ------------------------------------------------------------------ heartbeat

/**
 * Ask /healthz twice a second. While the server's event loop is blocked (time.sleep in a
 * handler) no answer comes, the dot stops and turns red: the blocking lesson, visible.
 */
function startHeartbeat(indicator) {
  const text = indicator.querySelector(".heartbeat-text");
  const dot = indicator.querySelector(".heartbeat-dot");
  let beats = 0;
  let lastBeat = performance.now();

  const render = () => {
    const silent = performance.now() - lastBeat;
    if (silent > STALLED_AFTER_MS) {
      indicator.dataset.state = "stalled";
      text.textContent = `сервер не отвечает ${Math.floor(silent / 1000)} с`;
    } else if (beats > 0) {
      indicator.dataset.state = "ok";
      text.textContent = `сервер отвечает · ${beats}`;
    }
  };

  (async () => {
    for (;;) {
      const started = performance.now();
      try {
        const response = await fetch(ROUTES.healthz, {
          cache: "no-store",
          signal: AbortSignal.timeout(PING_TIMEOUT_MS),
        });
        if (response.ok) {
          beats += 1;
          lastBeat = performance.now();
          indicator.dataset.beats = String(beats);
          dot.classList.remove("beat");
          void dot.offsetWidth; // restart the CSS animation
          dot.classList.add("beat");
        }
      } catch {
        // Timed out or refused: render() shows the silence growing.
      }
      render();
      await sleep(Math.max(0, PING_EVERY_MS - (performance.now() - started)));
    }
  })();
  setInterval(render, 250);
}

// ------------------------------------------------------------------ forms

/** The async forms: POST /api/tasks (JSON) instead of the plain form POST and redirect. */
function sendTasksWithFetch(form) {
  const method = form.dataset.form;
  const answer = form.querySelector(".form-answer");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = form.elements;
    const body = {
      method,
      // Sent as typed: the server validates it exactly as it validates the plain form.
      timeout: fields.processing_timeout.value,
      count: fields.count.value || "1",
      fail: fields.fail.checked,
    };
    if (fields.routing_key) body.routing_key = fields.routing_key.value;
    for (const input of form.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
    }
    form.querySelector("p.error")?.remove(); // the server's message from a plain POST, if any
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    say(answer, "Отправляем…", "wait");
    const { ok, data } = await fetchJson(ROUTES.tasks, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    button.disabled = false;
    if (ok) {
      say(answer, `Отправлено через ${METHOD_LABELS[method]}: ${taskNumbers(data.tasks)}`);
      return;
    }
    // A 503 (the broker is down, or the store is full) says why in Russian, like a bad field.
    say(answer, errorText(data), "error");
    const input = fields[FORM_FIELDS[data.field] || data.field];
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  });
}

/** The sync forms: the page stays, the answer appears under the form, the heartbeat goes on. */
function askSyncWithFetch(form) {
  const answer = form.querySelector(".form-answer");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // The JSON twin of the form's page (data-api): the same checks, the same wait.
    const url = `${form.dataset.api}?${new URLSearchParams(new FormData(form))}`;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const started = performance.now();
    const waiting = setInterval(() => {
      say(answer, `Ждём ответ… ${((performance.now() - started) / 1000).toFixed(0)} с`, "wait");
    }, 250);
    say(answer, "Ждём ответ…", "wait");
    const { ok, data } = await fetchJson(url);
    clearInterval(waiting);
    button.disabled = false;
    if (!ok) {
      say(answer, errorText(data), "error");
      return;
    }
    let text = `data_id=${data.data_id}: ${data.name} (ответ за ${seconds(data.seconds)}`;
    if (data.blocking === true) {
      text += ", цикл событий был заблокирован — сервер всё это время молчал";
    } else if (data.blocking === false) {
      text += ", цикл событий был свободен — сервер отвечал другим";
    }
    say(answer, `${text})`);
  });
}

/** The workflow form: POST /api/workflows, the tasks then appear in the table. */
function sendWorkflowWithFetch(form) {
  const answer = form.querySelector(".form-answer");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = form.elements;
    const body = {
      kind: fields.kind.value,
      count: Number(fields.count.value),
      timeout: fields.timeout.value,
    };
    if (fields.fail_member.value) body.fail_member = Number(fields.fail_member.value);
    say(answer, "Отправляем…", "wait");
    const { ok, data } = await fetchJson(ROUTES.workflows, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!ok) {
      say(answer, errorText(data), "error");
      return;
    }
    say(answer, `${WORKFLOW_LABELS[body.kind]}: ${taskNumbers(data.tasks)}`);
  });
}

// ------------------------------------------------------------------ a task through Celery's eyes

/** Click a Celery task's number: its callback status beside Celery's own state, every second. */
function watchCeleryTasks(rows, view) {
  let watching = null;
  rows.addEventListener("click", (event) => {
    const button = event.target.closest("[data-celery-task]");
    if (!button) return;
    watching = Number(button.dataset.celeryTask);
    view.hidden = false;
    view.scrollIntoView({ block: "nearest" });
    show(watching);
  });
  async function show(taskNum) {
    while (watching === taskNum) {
      const { ok, data } = await fetchJson(ROUTES.task.replace("{task_num}", taskNum));
      if (watching !== taskNum) return;
      fillCeleryView(view, taskNum, ok ? data : null);
      const settled = ok && CONFIG.final_statuses.includes(data.status) &&
        ["SUCCESS", "FAILURE"].includes(data.celery_state);
      if (settled) return;
      await sleep(1000);
    }
  }
}

function fillCeleryView(view, taskNum, task) {
  view.querySelector("[data-field=task]").textContent = `№${taskNum}`;
  const values = task ? {
    status: task.status,
    // celery_error: the result backend (Redis) does not answer; the worker waits for it too.
    celery_state: task.celery_state ?? (task.celery_error
      ? "недоступно: бэкенд результатов (Redis) не отвечает, воркер ждёт его"
      : "недоступно"),
    celery_result: task.celery_result === null ? "—" : String(task.celery_result),
    attempts: task.max_attempts ? `${task.attempts} из ${task.max_attempts}` : "—",
  } : { status: "задача не найдена", celery_state: "—", celery_result: "—", attempts: "—" };
  for (const [name, value] of Object.entries(values)) {
    view.querySelector(`[data-field=${name}]`).textContent = value;
  }
}

// ------------------------------------------------------------------ first visit

const FIRST_VISIT_KEY = "first-visit-closed";

/** The hint on what to click: shown until the visitor closes it, remembered in this browser. */
function showFirstVisitHint(hint) {
  // localStorage can be switched off or full: then the hint shows, and closes for this page only.
  try {
    if (localStorage.getItem(FIRST_VISIT_KEY)) return;
  } catch {
    // show it
  }
  hint.hidden = false;
  hint.querySelector("#first-visit-close").addEventListener("click", () => {
    hint.hidden = true;
    try {
      localStorage.setItem(FIRST_VISIT_KEY, "1");
    } catch {
      // not remembered: it shows again on the next visit
    }
  });
}

// ------------------------------------------------------------------ start

function main() {
  showFirstVisitHint(document.getElementById("first-visit"));
  const table = new TaskTable(
    document.getElementById("task-rows"),
    document.getElementById("task-row"),
    document.getElementById("no-tasks-row"),
  );
  const deadLetters = new DeadLetters(document.getElementById("dead-letters"));
  const onTask = (task) => {
    if (task.method === METHOD.RMQ && task.status === STATUS.ERROR) deadLetters.soon();
  };
  connectEvents(
    table,
    new WorkerList(document.getElementById("worker-list")),
    document.getElementById("stream-state"),
    onTask,
  );
  pollQueues(
    document.getElementById("queue-rows"),
    document.getElementById("queues-error"),
    document.getElementById("queues-node"),
    deadLetters,
  );
  purgeOnClick(document.getElementById("queue-rows"), document.getElementById("queues-answer"));
  deadLetters.refresh();
  startHeartbeat(document.getElementById("heartbeat"));
  for (const form of document.querySelectorAll("form.task-form")) sendTasksWithFetch(form);
  for (const form of document.querySelectorAll("form.sync-form")) askSyncWithFetch(form);
  setInterval(() => {
    document.querySelectorAll("[data-since]").forEach(tickDuration);
    document.querySelectorAll("[data-next-try]").forEach(tickRetry);
  }, 1000);
  sendWorkflowWithFetch(document.querySelector("form.workflow-form"));
  watchCeleryTasks(document.getElementById("task-rows"), document.getElementById("celery-view"));
}

main();
