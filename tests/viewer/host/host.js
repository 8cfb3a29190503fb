// A minimal MCP Apps host for the viewer tests, built like the ext-apps reference host: a real MCP client
// (TypeScript SDK) over streamable HTTP to the server under test, and ext-apps' AppBridge talking to the
// app in a sandboxed iframe. It records what a person's host would do (links opened, tool calls forwarded).
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { AppBridge, PostMessageTransport, getToolUiResourceUri } from "@modelcontextprotocol/ext-apps/app-bridge";

const UI_EXTENSION = "io.modelcontextprotocol/ui";
const APP_MIME = "text/html;profile=mcp-app";
const DARK = {
  "--color-background-primary": "#1f1e1d",
  "--color-background-secondary": "#2a2927",
  "--color-text-primary": "#f4f3ee",
  "--color-text-secondary": "#c9c6bd",
  "--color-border-primary": "#3d3b38",
};

const log = { openedLinks: [], toolCalls: [], ready: false, error: null };
window.hostLog = log;

async function connect() {
  const client = new Client(
    { name: "viewer-test-host", version: "1.0.0" },
    { capabilities: { extensions: { [UI_EXTENSION]: { mimeTypes: [APP_MIME] } } } },
  );
  await client.connect(new StreamableHTTPClientTransport(new URL("/mcp", location.href)));
  return client;
}

// Call `toolName` as a model would, then show its UI with the result: what a host does for a UI-bound tool.
async function showTool(client, toolName, args, theme) {
  const { tools } = await client.listTools();
  const tool = tools.find((t) => t.name === toolName);
  const uri = tool && getToolUiResourceUri(tool);
  if (!uri) throw new Error(`${toolName} is not bound to a UI resource`);
  const result = await client.callTool({ name: toolName, arguments: args });
  const resource = await client.readResource({ uri });
  const content = resource.contents[0];
  if (content.mimeType !== APP_MIME) throw new Error(`unexpected MIME type ${content.mimeType}`);

  document.body.dataset.theme = theme;
  const iframe = document.createElement("iframe");
  iframe.setAttribute("sandbox", "allow-scripts");
  if (content._meta?.ui?.permissions?.clipboardWrite) iframe.allow = "clipboard-write";  // as the resource asks
  iframe.title = "Mogplex run viewer";
  document.getElementById("frame").append(iframe);

  const hostContext = { theme, displayMode: "inline", styles: { variables: theme === "dark" ? DARK : {} } };
  const bridge = new AppBridge(null, { name: "viewer-test-host", version: "1.0.0" },
    { openLinks: {}, serverTools: {}, logging: {} }, { hostContext });
  bridge.oncalltool = async (params) => {
    log.toolCalls.push(params.name);
    return client.callTool(params);
  };
  bridge.onopenlink = async ({ url }) => { log.openedLinks.push(url); return {}; };
  bridge.onsizechange = ({ height }) => { if (height) iframe.style.height = `${height}px`; };
  bridge.oninitialized = async () => {
    await bridge.sendToolInput({ arguments: args });
    await bridge.sendToolResult(result);
    log.ready = true;
  };
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  iframe.srcdoc = content.text;
  return result.structuredContent;
}

window.startHost = async (toolName, args, theme = "light") => {
  try {
    const client = await connect();
    return await showTool(client, toolName, args, theme);
  } catch (error) {
    log.error = String(error && error.stack ? error.stack : error);
    throw error;
  }
};
