// The real LAppS server for the node tests: `python -m lapps` on a free port, with the shipped
// echo (raw), echo_lapps and time_broadcast services copied into a temporary folder.
// The Python is $LAPPS_PYTHON, else the repository's .venv/bin/python (what `make venv` makes).

import { spawn } from "node:child_process";
import { closeSync, cpSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const PYTHON = process.env.LAPPS_PYTHON || join(REPO, ".venv", "bin", "python");

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

function config(servicesDir, port) {
  return `[server]
ip = "127.0.0.1"
port = ${port}
workers = 2
listeners = 1
shutdown_timeout = 2
services_dir = ${JSON.stringify(servicesDir)}

[limits]
handshake_timeout = 2
close_timeout = 1

[admin]
port = 0

[services.echo]

[services.echo_lapps]
protocol = "lapps"
preload = ["time", "murmur"]

[services.time_broadcast]
standalone = true
preload = ["nap", "time"]
`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function echoOk(port) {
  return new Promise((done) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`);
    const timer = setTimeout(() => { ws.close(); done(false); }, 1000);
    ws.onopen = () => ws.send("ready?");
    ws.onmessage = () => { clearTimeout(timer); ws.close(); done(true); };
    ws.onerror = () => { clearTimeout(timer); done(false); };
  });
}

/** A server process: start() (again after stop(), on the same port), stop(), log(). */
export class Server {
  constructor(port) {
    this.port = port;
    this.root = mkdtempSync(join(tmpdir(), "lapps-js-"));
    const services = join(this.root, "services");
    for (const name of ["echo", "echo_lapps", "time_broadcast"]) {
      cpSync(join(REPO, "services", name), join(services, name), { recursive: true });
    }
    this.configPath = join(this.root, "lapps.toml");
    writeFileSync(this.configPath, config(services, port));
    this.logPath = join(this.root, "server.log");
    this.proc = null;
  }

  static async start() {
    const server = new Server(await freePort());
    await server.start();
    return server;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}`;
  }

  log() {
    try {
      return readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }

  async start() {
    const out = openSync(this.logPath, "a");
    this.proc = spawn(PYTHON, ["-m", "lapps", "--config", this.configPath], {
      cwd: REPO, stdio: ["ignore", out, out], detached: true,
    });
    closeSync(out);
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`server exited with ${this.proc.exitCode}:\n${this.log()}`);
      const serving = new Set(this.log().match(/lapps\[worker \d+\] INFO serving/g) || []);
      if (serving.size >= 2 && (await echoOk(this.port))) return;
      await sleep(100);
    }
    throw new Error(`server not ready in 15 s:\n${this.log()}`);
  }

  /** Stop every process of the server where it stands (SIGSTOP): nothing is answered. */
  freeze() {
    process.kill(-this.proc.pid, "SIGSTOP");
  }

  /** SIGKILL the process group: the kernel closes every socket without a close frame. */
  async kill() {
    const proc = this.proc;
    this.proc = null;
    const exited = proc.exitCode === null ? new Promise((r) => proc.once("exit", r)) : null;
    process.kill(-proc.pid, "SIGKILL");
    if (exited) await exited;
  }

  /** SIGTERM (connections get 1001), wait; then SIGKILL its process group. */
  async stop() {
    const proc = this.proc;
    if (proc === null) return;
    this.proc = null;
    if (proc.exitCode === null) {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await Promise.race([exited, sleep(6000)]);
    }
    try {
      process.kill(-proc.pid, "SIGKILL");
    } catch {
      // the group is gone already
    }
  }

  async dispose() {
    await this.stop();
    rmSync(this.root, { recursive: true, force: true });
  }
}
