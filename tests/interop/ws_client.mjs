// A stock ACP client on the official TypeScript SDK (npm
// @agentclientprotocol/sdk, its experimental/ws-client transport, with the
// `ws` package as Node 20's WebSocket) against the relay's /acp endpoint,
// run by tests/interop_node_sdk.rs against the demo agent:
//   1. initialize -> session/new -> session/prompt (answering the permission
//      ask), then disconnect;
//   2. a new connection: initialize -> session/load, recording the
//      session/update notifications that arrive before the load's answer
//      (the history), then one more prompt on the loaded session.
// Prints one JSON line with what it saw; exits 1 with {"ok":false,...} on error.
//
// Env: INTEROP_NODE_DIR (where setup-interop.sh installed node_modules),
// ACP_URL (ws://127.0.0.1:PORT/acp), ACP_TOKEN.

import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(path.join(process.env.INTEROP_NODE_DIR, "package.json"));
const load = (name) => import(pathToFileURL(require.resolve(name)).href);

const acp = await load("@agentclientprotocol/sdk");
const { createWebSocketStream } = await load("@agentclientprotocol/sdk/experimental/ws-client");
const wsModule = await load("ws");
const WebSocket = wsModule.WebSocket ?? wsModule.default;

const url = process.env.ACP_URL;
const headers = { Authorization: `Bearer ${process.env.ACP_TOKEN}` };
const deadline = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: "timed out" }));
  process.exit(1);
}, 25000);

// Every message the client app receives, in order.
const received = [];
let permissionAsks = 0;

function app() {
  return acp
    .client({ name: "acp-relay-interop-ws-client" })
    .onNotification(acp.methods.client.session.update, (ctx) => {
      received.push({ kind: "update", params: ctx.params });
    })
    .onRequest(acp.methods.client.session.requestPermission, (ctx) => {
      permissionAsks += 1;
      received.push({ kind: "ask", params: ctx.params });
      const allow = ctx.params.options.find((o) => o.kind.startsWith("allow")) ?? ctx.params.options[0];
      return { outcome: { outcome: "selected", optionId: allow.optionId } };
    });
}

const text = (updates) =>
  updates
    .filter((u) => u.kind === "update" && u.params.update.sessionUpdate === "agent_message_chunk")
    .map((u) => u.params.update.content.text ?? "")
    .join("");

const clientCapabilities = {};

try {
  // 1. First connection: a turn, then disconnect.
  const first = await app().connectWith(createWebSocketStream(url, { WebSocket, headers }), async (ctx) => {
    const init = await ctx.request(acp.methods.agent.initialize, {
      protocolVersion: acp.PROTOCOL_VERSION,
      clientCapabilities,
    });
    const session = await ctx.request(acp.methods.agent.session.new, { cwd: "/", mcpServers: [] });
    const answer = await ctx.request(acp.methods.agent.session.prompt, {
      sessionId: session.sessionId,
      prompt: [{ type: "text", text: "/chunks 3\n/ask\nhello from the node sdk" }],
    });
    return {
      sessionId: session.sessionId,
      loadSession: init.agentCapabilities?.loadSession === true,
      stopReason: answer.stopReason,
    };
  });
  const liveText = text(received);

  // 2. Reconnect on a new transport and load the session.
  received.length = 0;
  const second = await app().connectWith(createWebSocketStream(url, { WebSocket, headers }), async (ctx) => {
    const init = await ctx.request(acp.methods.agent.initialize, {
      protocolVersion: acp.PROTOCOL_VERSION,
      clientCapabilities,
    });
    if (init.agentCapabilities?.loadSession !== true) {
      throw new Error("the relay does not advertise loadSession");
    }
    await ctx.request(acp.methods.agent.session.load, {
      sessionId: first.sessionId,
      cwd: "/",
      mcpServers: [],
    });
    // What had arrived when the load was answered: the history.
    const history = received.slice();
    received.length = 0;
    const answer = await ctx.request(acp.methods.agent.session.prompt, {
      sessionId: first.sessionId,
      prompt: [{ type: "text", text: "/chunks 1\nafter the load" }],
    });
    return { history, stopReason: answer.stopReason, afterText: text(received) };
  });

  const kinds = second.history.map((u) =>
    u.kind === "update" ? u.params.update.sessionUpdate : u.kind,
  );
  console.log(
    JSON.stringify({
      ok: true,
      sessionId: first.sessionId,
      loadSession: first.loadSession,
      firstStopReason: first.stopReason,
      liveText,
      permissionAsks,
      historyCount: second.history.length,
      historyKinds: kinds,
      historySessions: [...new Set(second.history.map((u) => u.params.sessionId))],
      historyText: text(second.history),
      secondStopReason: second.stopReason,
      afterText: second.afterText,
    }),
  );
  clearTimeout(deadline);
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e?.stack ?? e) }));
  process.exit(1);
}
