// A remote connector's view of mogplex-mcp's OAuth front door through the official TypeScript SDK's auth
// provider (dynamic registration, PKCE, `finishAuth`), pinned in package.json.
//
// Usage: node ts_oauth_client.mjs '{"url": "http://127.0.0.1:PORT/mcp", "redirectUrl": "http://127.0.0.1:N/cb",
//   "refreshRounds": 2, "expireMs": 2500}'
// After signing in it calls a tool, then `refreshRounds` times waits `expireMs` (past the access token's life,
// which the test makes short) and calls it again: the SDK meets the server's 401, refreshes, and retries.
// Protocol with the Python test: this script prints `AUTHORIZE <url>` when the user must sign in; the test
// fills the sign-in page in Chromium and writes `CODE <code>` on stdin. At the end it prints one
// `REPORT <json>` line with what the client saw (the test judges it).
import readline from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const config = JSON.parse(process.argv[2]);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const kept = {};
const report = { signIns: 0, authorizeRequests: 0 };
const authProvider = {
  get redirectUrl() {
    return config.redirectUrl;
  },
  get clientMetadata() {
    return {
      client_name: "TypeScript Assistant",
      redirect_uris: [config.redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  },
  clientInformation: () => kept.client,
  saveClientInformation: (info) => {
    kept.client = info;
  },
  tokens: () => kept.tokens,
  saveTokens: (tokens) => {
    kept.tokens = tokens;
  },
  redirectToAuthorization: (url) => {
    report.authorizeRequests += 1;
    console.log(`AUTHORIZE ${url.toString()}`);
  },
  saveCodeVerifier: (verifier) => {
    kept.verifier = verifier;
  },
  codeVerifier: () => kept.verifier,
};

async function connect() {
  const transport = new StreamableHTTPClientTransport(new URL(config.url), { authProvider });
  const client = new Client({ name: "mogplex-interop-ts-oauth", version: "1.0.0" });
  await client.connect(transport);
  return client;
}

let client;
try {
  client = await connect();
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
  report.signIns += 1;
  const answer = (await lines.next()).value ?? "";
  const transport = new StreamableHTTPClientTransport(new URL(config.url), { authProvider });
  await transport.finishAuth(answer.replace(/^CODE /, "").trim());
  client = await connect();
}
report.tools = (await client.listTools()).tools.map((tool) => tool.name);
const repos = await client.callTool({ name: "list_repos", arguments: {} });
report.listRepos = { isError: repos.isError === true, structured: repos.structuredContent ?? null };
report.tokenPrefix = kept.tokens.access_token.slice(0, 5);
report.hasRefreshToken = Boolean(kept.tokens.refresh_token);
// Each round: the access token expires, the next call meets a 401, the SDK refreshes (rotating the refresh
// token) and retries. The tokens themselves are never printed: only whether they changed.
report.rounds = [];
for (let round = 0; round < (config.refreshRounds ?? 0); round += 1) {
  const before = { access: kept.tokens.access_token, refresh: kept.tokens.refresh_token };
  await new Promise((resolve) => setTimeout(resolve, config.expireMs));
  const again = await client.callTool({ name: "list_repos", arguments: {} });
  const tools = (await client.listTools()).tools.length;
  report.rounds.push({
    newAccessToken: kept.tokens.access_token !== before.access,
    newRefreshToken: kept.tokens.refresh_token !== before.refresh,
    tokenPrefix: kept.tokens.access_token.slice(0, 5),
    isError: again.isError === true,
    repos: (again.structuredContent?.repos ?? []).length,
    tools,
  });
}
console.log(`REPORT ${JSON.stringify(report)}`);
await client.close();
process.exit(0);
