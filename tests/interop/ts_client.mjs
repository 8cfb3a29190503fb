// A host's view of mogplex-mcp through the official TypeScript SDK client (pinned in package.json).
//
// Usage: node ts_client.mjs '<json config>'
//   config: {"transport": "stdio", "command": "...", "args": [...], "env": {...}, "cwd": "..."}
//        or {"transport": "http", "url": "http://127.0.0.1:PORT/mcp"}
// Drives every tool, the resources and progress, then prints one JSON report on stdout. The Python test
// (test_typescript_client.py) judges the report; this script only records what the client saw.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";

const config = JSON.parse(process.argv[2]);
const transport =
  config.transport === "http"
    ? new StreamableHTTPClientTransport(new URL(config.url))
    : new StdioClientTransport({
        command: config.command,
        args: config.args,
        env: config.env,
        cwd: config.cwd,
        stderr: "inherit",
      });

const client = new Client({ name: "mogplex-interop-ts", version: "1.0.0" });
const report = { calls: {}, progress: {}, reads: {} };

async function call(label, name, args, options = {}) {
  const seen = [];
  const result = await client.callTool({ name, arguments: args }, CallToolResultSchema, {
    onprogress: (p) => seen.push(p),
    ...options,
  });
  report.calls[label] = {
    isError: result.isError === true,
    structured: result.structuredContent ?? null,
    text: result.content.map((block) => block.text ?? "").join("\n"),
  };
  report.progress[label] = seen;
  return result;
}

try {
  await client.connect(transport);
  report.serverVersion = client.getServerVersion();
  report.capabilities = client.getServerCapabilities();
  report.tools = (await client.listTools()).tools.map((tool) => ({
    name: tool.name,
    hasOutputSchema: Boolean(tool.outputSchema),
    annotations: tool.annotations ?? null,
  }));

  const repos = await call("list_repos", "list_repos", {});
  const repoId = repos.structuredContent.repos[0].id;
  const task = { repoId, prompt: "Interop: add a changelog entry [scenario:success]" };
  const started = await call("start_run", "start_run", task);
  await call("start_run_again", "start_run", task);
  const runId = started.structuredContent.run.runId;

  // Waiting for a finished run: each call stays under the request timeout thanks to the progress it sends.
  for (let i = 0; i < 20; i++) {
    const waited = await call("wait_for_run", "wait_for_run", { runId, timeoutSeconds: 5 }, {
      timeout: 15000,
      resetTimeoutOnProgress: true,
    });
    if (waited.isError || waited.structuredContent.finished) break;
  }
  await call("get_run", "get_run", { runId });
  await call("list_run_events", "list_run_events", { runId, includePayload: true, limit: 200 });

  // A run that never ends: a 4 s wait under a 2 s request timeout only survives if progress resets it.
  const endless = await call("start_endless", "start_run", { repoId, prompt: "Interop: keep going [scenario:endless]" });
  const endlessId = endless.structuredContent.run.runId;
  await call("wait_reset_by_progress", "wait_for_run", { runId: endlessId, timeoutSeconds: 4 }, {
    timeout: 2000,
    resetTimeoutOnProgress: true,
    maxTotalTimeout: 20000,
  });
  // The control: the same wait without the reset must time out, or the call above proves nothing.
  try {
    await call("wait_without_reset", "wait_for_run", { runId: endlessId, timeoutSeconds: 4 }, { timeout: 2000 });
    report.withoutReset = { timedOut: false };
  } catch (error) {
    report.withoutReset = { timedOut: true, code: error.code ?? null };
  }
  await call("cancel_run", "cancel_run", { runId: endlessId });
  await call("bad_run_id", "get_run", { runId: "../repos" });

  report.resources = (await client.listResources()).resources.map((resource) => resource.uri);
  report.templates = (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
  for (const uri of [`mogplex://runs/${runId}`, `mogplex://runs/${runId}/events`, `mogplex://runs/${runId}/log`]) {
    const read = await client.readResource({ uri });
    report.reads[uri] = read.contents.map((content) => ({ mimeType: content.mimeType, text: content.text }));
  }
  try {
    await client.readResource({ uri: "mogplex://runs/00000000-0000-4000-8000-000000000000" });
    report.missingResource = { error: null };
  } catch (error) {
    report.missingResource = { error: String(error.message ?? error), code: error.code ?? null };
  }
  report.ok = true;
} catch (error) {
  report.ok = false;
  report.error = String(error?.stack ?? error);
} finally {
  await client.close().catch(() => {});
}
// Exit only once the report is flushed: a pipe holds 64 KiB, and process.exit() drops the rest.
process.stdout.write(JSON.stringify(report) + "\n", () => process.exit(report.ok ? 0 : 1));
