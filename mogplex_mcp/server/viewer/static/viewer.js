// The run card. Runs after the bundled ext-apps library (ExtApps). Upstream text only ever reaches the page
// through textContent; links open through the host (app.openLink); the run refreshes through the host's tool
// calls: wait_for_run (answered by the server's follower of the run) then list_run_events from the cursor.
const { App, applyDocumentTheme, applyHostStyleVariables } = ExtApps;
const config = JSON.parse(document.getElementById("viewer-config").textContent);
const $ = (id) => document.getElementById(id);

const LABELS = {
  pending: "Pending", streaming: "Running", awaiting_input: "Awaiting input", success: "Succeeded", failed: "Failed",
  cancelled: "Cancelled",
};
const MAX_EVENTS_SHOWN = 500;
const state = {
  run: null, runId: null, cursor: null, eventCount: 0, following: false, stopped: false,
  elapsed: null, elapsedAt: 0, confirming: false, cancelling: false,
};

const app = new App({ name: "mogplex-run-viewer", version: config.version }, {}, { autoResize: true });

function show(el, visible) { el.hidden = !visible; }
function setText(el, value) { el.textContent = value === null || value === undefined || value === "" ? "—" : String(value); }
function note(message) { $("note").textContent = message || ""; }
function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

function formatElapsed(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds) || seconds < 0) return "";
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  if (h) return `${h}h ${pad(m)}m`;
  return m ? `${m}m ${pad(r)}s` : `${r}s`;
}

function tickElapsed() {
  if (state.elapsed === null) { $("elapsed").textContent = ""; return; }
  const running = state.run && !state.run.terminal;
  const extra = running ? (performance.now() - state.elapsedAt) / 1000 : 0;
  $("elapsed").textContent = formatElapsed(state.elapsed + extra);
}

function safeHttpUrl(value) {
  if (typeof value !== "string") return null;
  try {
    const url = new URL(value);
    return url.protocol === "https:" || url.protocol === "http:" ? url : null;
  } catch { return null; }
}

function repoName(run) {
  const named = run.repoFullName || run.repositoryFullName || run.repository;
  if (typeof named === "string" && named) return named;
  const pr = safeHttpUrl(run.pullRequestUrl);
  const parts = pr ? pr.pathname.split("/").filter(Boolean) : [];
  if (parts.length >= 2) return `${parts[0]}/${parts[1]}`;
  return run.repoId ? `repo ${String(run.repoId).slice(0, 8)}` : null;
}

function branchText(run) {
  const base = run.baseBranch, working = run.workingBranch;
  if (base && working && base !== working) return `${base} → ${working}`;
  return working || base || null;
}

// `delivered` is the server's one derived outcome where it has one; older servers send only codeChanged.
const DELIVERED = {
  pull_request: "Yes", changes_without_pull_request: "Yes (no pull request)", no_changes: "No",
  no_pull_request: "Not reported", unknown: "Unknown: check the branch", not_yet: "Not yet known",
};

function changedText(run) {
  if (typeof run.delivered === "string" && DELIVERED[run.delivered]) return DELIVERED[run.delivered];
  if (run.codeChanged === true) return "Yes";
  if (run.codeChanged === false) return "No";
  return run.terminal ? "Not reported" : "Not yet known";
}

// While a run goes, the card says where it stands in its own words (a wait's summary speaks of the wait);
// once it is over, the server's summary is the outcome (pull request, error, cancel).
const GOING = {
  pending: "Waiting for a sandbox and runtime.",
  streaming: "The agent is working.",
  awaiting_input: "The agent is waiting for input.",
};

function summaryOf(run, serverSummary) {
  if (run.terminal && typeof serverSummary === "string" && serverSummary) return serverSummary;
  if (run.probablyStuck) return "Probably stuck: still running long after runs usually end (Mogplex stops runs at 30 min).";
  return GOING[run.status] || (typeof serverSummary === "string" && serverSummary) || `Status: ${run.status}.`;
}

function statusOf(run) {
  const status = String(run.status || "unknown");
  if (run.terminal && run.stoppedByCancel) return "cancelled";  // ended failed while being cancelled
  return status;
}

function renderFiles(run) {
  const files = Array.isArray(run.changedFiles) ? run.changedFiles.filter((f) => typeof f === "string") : [];
  const list = $("files");
  list.replaceChildren(...files.slice(0, 50).map((file) => {
    const item = document.createElement("li");
    item.textContent = file;
    return item;
  }));
  if (files.length > 50) {
    const more = document.createElement("li");
    more.textContent = `… and ${files.length - 50} more`;
    list.append(more);
  }
  show($("files-box"), files.length > 0);
}

function render(run, summary) {
  if (!run || typeof run !== "object" || typeof run.runId !== "string") return;
  state.run = run;
  state.runId = run.runId;
  const status = statusOf(run);
  const known = Object.prototype.hasOwnProperty.call(LABELS, status);
  $("card").dataset.status = known ? status : run.terminal ? "failed" : "active";
  $("status").textContent = known ? LABELS[status] : status;
  const title = $("title");
  title.textContent = run.terminal ? "Mogplex run" : "Mogplex run in progress";
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = run.runId.slice(0, 8);
  title.append(id);
  $("summary").textContent = summaryOf(run, summary);
  setText($("repo"), repoName(run));
  setText($("branch"), branchText(run));
  setText($("harness"), run.harness || "codex");
  setText($("changed"), changedText(run));
  renderFiles(run);
  $("error").textContent = run.error || "";
  show($("error"), Boolean(run.error));
  const pr = safeHttpUrl(run.pullRequestUrl);
  show($("open-pr"), Boolean(pr));
  if (pr) {
    const number = pr.pathname.match(/\/pull\/(\d+)/);
    $("open-pr").textContent = number ? `Open pull request #${number[1]}` : "Open pull request";
    $("open-pr").title = pr.href;
  }
  $("copy-id").disabled = false;
  show($("cancel"), config.canCancel && !run.terminal && !state.confirming);
  $("cancel").disabled = state.cancelling;
  if (run.terminal) { show($("confirm"), false); state.confirming = false; }
  if (typeof run.elapsedSeconds === "number") {
    state.elapsed = run.elapsedSeconds;
    state.elapsedAt = performance.now();
  }
  tickElapsed();
}

function renderError(message) {
  $("card").dataset.status = "failed";
  $("status").textContent = "Error";
  $("summary").textContent = message || "The tool call failed.";
}

function eventItem(event) {
  const item = document.createElement("li");
  item.className = String(event.type || "").replace(/[^a-z_]/gi, "");
  const parts = [["when", timeOf(event.createdAt)], ["kind", event.type], ["tool", event.toolName], ["msg", event.message]];
  for (const [cls, value] of parts) {
    if (value === null || value === undefined || value === "") continue;
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = String(value);
    item.append(span);
  }
  return item;
}

function timeOf(value) {
  const date = typeof value === "string" ? new Date(value) : null;
  if (!date || isNaN(date.getTime())) return "--:--:--";
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

function appendEvents(events) {
  if (!events.length) return;
  const list = $("events");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
  list.querySelector(".empty")?.remove();
  list.append(...events.map(eventItem));
  while (list.children.length > MAX_EVENTS_SHOWN) list.firstElementChild.remove();
  state.eventCount += events.length;
  $("event-count").textContent = `(${state.eventCount})`;
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function textOf(result) {
  return (result.content || []).map((block) => (block && block.type === "text" ? block.text : "")).join(" ").trim();
}

async function call(name, args) {
  const result = await app.callServerTool({ name, arguments: args });
  if (result.isError) throw new Error(textOf(result) || `${name} failed`);
  return result.structuredContent || {};
}

async function loadEvents() {
  for (let page = 0; page < 20 && !state.stopped; page++) {
    const args = { runId: state.runId, limit: 100 };
    if (state.cursor) args.afterEventId = state.cursor;
    const listed = await call("list_run_events", args);
    appendEvents(Array.isArray(listed.events) ? listed.events : []);
    if (listed.nextCursor) state.cursor = listed.nextCursor;
    if (!listed.hasMore) return;
  }
}

async function follow() {
  if (state.following || !state.runId) return;
  state.following = true;
  let backoff = 0;
  try {
    while (!state.stopped) {
      try {
        if (state.run && !state.run.terminal) {
          // First: it starts (or joins) the server's follower, which then answers list_run_events too.
          const waited = await call("wait_for_run", { runId: state.runId, timeoutSeconds: config.waitSeconds });
          render(waited.run, waited.summary);
        }
        await loadEvents();
        if (backoff) note("");
        backoff = 0;
        if (!state.run || state.run.terminal) break;
        // A run awaiting input answers wait_for_run at once (a person must act in Mogplex): pace, do not spin.
        if (state.run.status === "awaiting_input") await sleep(config.waitSeconds * 1000);
      } catch (error) {
        backoff = Math.min(60, backoff ? backoff * 2 : 5);
        note(`Could not refresh (${String(error && error.message ? error.message : error).slice(0, 160)}); retrying in ${backoff} s.`);
        await sleep(backoff * 1000);
      }
    }
  } finally {
    state.following = false;
  }
}

function onToolResult(result) {
  if (result.isError) { renderError(textOf(result)); return; }
  const data = result.structuredContent || {};
  render(data.run, data.summary);
  follow();
}

function applyContext(context) {
  if (!context) return;
  if (context.theme) applyDocumentTheme(context.theme);
  if (context.styles && context.styles.variables) applyHostStyleVariables(context.styles.variables);
}

function clipboardAllowed() {
  const policy = document.permissionsPolicy || document.featurePolicy;
  return !policy || typeof policy.allowsFeature !== "function" || policy.allowsFeature("clipboard-write");
}

async function copyRunId() {
  if (!state.runId) return;
  try {
    if (!clipboardAllowed()) throw new Error("the host did not grant clipboard-write");
    await navigator.clipboard.writeText(state.runId);
    note("Run ID copied.");
  } catch {
    const area = document.createElement("textarea");
    area.value = state.runId;
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    note(copied ? "Run ID copied." : `Run ID: ${state.runId}`);
  }
}

async function openPullRequest() {
  const pr = state.run && safeHttpUrl(state.run.pullRequestUrl);
  if (!pr) return;
  try {
    const { isError } = await app.openLink({ url: pr.href });
    note(isError ? "The host did not open the link." : "");
  } catch (error) {
    note("The host could not open the link.");
  }
}

function askCancel(asking) {
  state.confirming = asking;
  show($("confirm"), asking);
  show($("cancel"), config.canCancel && !asking && state.run && !state.run.terminal);
  if (asking) $("confirm-no").focus();
}

async function cancelRun() {
  askCancel(false);
  state.cancelling = true;
  $("cancel").disabled = true;
  note("Cancelling…");
  try {
    const cancelled = await call("cancel_run", { runId: state.runId });
    render(cancelled.run, cancelled.summary);
    note("Cancellation requested.");
    follow();
  } catch (error) {
    note(`Could not cancel: ${String(error && error.message ? error.message : error).slice(0, 160)}`);
  } finally {
    state.cancelling = false;
    $("cancel").disabled = false;
  }
}

$("copy-id").addEventListener("click", copyRunId);
$("open-pr").addEventListener("click", openPullRequest);
$("cancel").addEventListener("click", () => askCancel(true));
$("confirm-no").addEventListener("click", () => askCancel(false));
$("confirm-yes").addEventListener("click", cancelRun);
setInterval(tickElapsed, 1000);

app.ontoolresult = onToolResult;
app.ontoolinput = ({ arguments: args }) => {
  if (!state.run && args && typeof args.runId === "string") $("summary").textContent = `Loading run ${args.runId}…`;
};
app.ontoolcancelled = () => { if (!state.run) renderError("The tool call was cancelled."); };
app.onhostcontextchanged = applyContext;
app.onteardown = async () => { state.stopped = true; return {}; };
app.connect().then(() => applyContext(app.getHostContext()), (error) => renderError(`Could not connect to the host: ${error}`));
