// Peer echo server: node's `ws` package, for bench/run_peers.py.
//
//     node ws_server.js PORT
//
// Listens on 127.0.0.1:PORT, any path; every message goes back as it came (text as text,
// binary as binary). No permessage-deflate; maxPayload 16 MiB. Prints nothing but errors.
// `ws` comes from npm: `npm install --prefix bench/peers ws` (bench/peers/node_modules).
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || process.argv.length !== 3) {
  console.error('usage: node ws_server.js PORT');
  process.exit(2);
}
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false,
                                  maxPayload: 16 * 1024 * 1024, clientTracking: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});   // a peer that vanishes mid-frame: nothing to report
});
wss.on('error', (err) => { console.error(`ws_server: ${err.message}`); process.exit(1); });
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
