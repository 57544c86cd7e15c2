// deno-lint-ignore-file no-console -- test helpers report to the test runner.
// Runs Debian's Prometheus server on loopback for tests that check what it
// scrapes from the Prometheus sink, and queries its HTTP API.

import { readEnv } from "../ffi/_env.ts";

/** Where Debian's `prometheus` package installs the server and its lint tool. */
export const PROMETHEUS_BINARY = "/usr/bin/prometheus";
export const PROMTOOL_BINARY = "/usr/bin/promtool";

const inCi = readEnv("CI") === "true";

/**
 * Returns Deno.test options for a test that runs Prometheus or promtool.
 * Outside CI the test is ignored, with the reason printed, when they are not
 * installed. In CI (CI=true) it always runs: .ci/run installs the package.
 */
export function prometheusTest(): { ignore: boolean } {
  const missing = [PROMETHEUS_BINARY, PROMTOOL_BINARY].filter((path) => !isFile(path));
  if (missing.length === 0 || inCi) return { ignore: false };
  console.warn(
    `Prometheus test ignored: ${missing.join(" and ")} not found (apt-get install prometheus)`,
  );
  return { ignore: true };
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Returns a TCP port that was free on 127.0.0.1 a moment ago. */
function freeLoopbackPort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** One series of an instant query result: its labels and its value. */
export interface PrometheusSample {
  labels: Record<string, string>;
  value: number;
  /** The sample's timestamp, in seconds since the Unix epoch. */
  time: number;
}

interface QueryResponse {
  status: string;
  error?: string;
  data?: {
    resultType: string;
    result: { metric: Record<string, string>; value: [number, string] }[];
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A Prometheus server on 127.0.0.1 that scrapes the given targets every
 * second, with its configuration, data and log in a temporary directory.
 * Disposing it stops the server (SIGTERM, then SIGKILL after 5 s) and
 * removes the directory.
 */
export class PrometheusServer implements AsyncDisposable {
  /** The base URL of the server's HTTP API, `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly #directory: string;
  readonly #child: Deno.ChildProcess;
  readonly #logWritten: Promise<void>;

  private constructor(
    url: string,
    directory: string,
    child: Deno.ChildProcess,
    logWritten: Promise<void>,
  ) {
    this.url = url;
    this.#directory = directory;
    this.#child = child;
    this.#logWritten = logWritten;
  }

  /**
   * Starts Prometheus with one scrape job, `bpfscope`, over `targets`
   * (`HOST:PORT` each, path /metrics), and waits until it reports ready.
   */
  static async start(targets: readonly string[], timeoutMs = 15_000): Promise<PrometheusServer> {
    const directory = await Deno.makeTempDir({ prefix: "bpfscope-prometheus-" });
    const config = [
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 1s",
      "scrape_configs:",
      "  - job_name: bpfscope",
      "    static_configs:",
      `      - targets: ${JSON.stringify(targets)}`,
      "",
    ].join("\n");
    await Deno.writeTextFile(`${directory}/prometheus.yml`, config);

    const port = freeLoopbackPort();
    const child = new Deno.Command(PROMETHEUS_BINARY, {
      args: [
        `--config.file=${directory}/prometheus.yml`,
        `--storage.tsdb.path=${directory}/data`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const log = await Deno.open(`${directory}/prometheus.log`, { write: true, create: true });
    const logWritten = child.stderr.pipeTo(log.writable);

    const server = new PrometheusServer(`http://127.0.0.1:${port}`, directory, child, logWritten);
    try {
      await server.#waitUntilReady(timeoutMs);
    } catch (error) {
      await server[Symbol.asyncDispose]();
      throw error;
    }
    return server;
  }

  async #waitUntilReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const exited = this.#child.status.then((status) => status);
    let lastError = "no response";
    while (Date.now() < deadline) {
      const status = await Promise.race([exited, delay(0).then(() => undefined)]);
      if (status !== undefined) {
        throw new Error(`Prometheus exited with code ${status.code}.\n${await this.log()}`);
      }
      try {
        const response = await fetch(`${this.url}/-/ready`);
        await response.body?.cancel();
        if (response.ok) return;
        lastError = `HTTP ${response.status}`;
      } catch (error) {
        lastError = error instanceof Error ? error.message : String(error);
      }
      await delay(100);
    }
    throw new Error(
      `Prometheus was not ready within ${timeoutMs} ms (${lastError}).\n${await this.log()}`,
    );
  }

  /** Runs an instant query and returns its series. */
  async query(promql: string): Promise<PrometheusSample[]> {
    const response = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = await response.json() as QueryResponse;
    if (body.status !== "success" || body.data === undefined) {
      throw new Error(`Prometheus query ${promql} failed: ${body.error ?? response.status}`);
    }
    if (body.data.resultType !== "vector") {
      throw new Error(
        `Prometheus query ${promql} returned a ${body.data.resultType}, not a vector`,
      );
    }
    return body.data.result.map(({ metric, value }) => ({
      labels: metric,
      time: value[0],
      value: Number(value[1]),
    }));
  }

  /** Returns the `# TYPE` and `# HELP` that Prometheus stored for a metric family. */
  async metadata(name: string): Promise<{ type: string; help: string }[]> {
    const response = await fetch(`${this.url}/api/v1/metadata?metric=${encodeURIComponent(name)}`);
    const body = await response.json() as {
      status: string;
      data?: Record<string, { type: string; help: string }[]>;
    };
    return (body.data?.[name] ?? []).map(({ type, help }) => ({ type, help }));
  }

  /**
   * Repeats an instant query until `accept` returns true for its result, and
   * returns that result. Throws after `timeoutMs` with the last result and the
   * end of Prometheus's log.
   */
  async waitFor(
    promql: string,
    accept: (samples: PrometheusSample[]) => boolean = (samples) => samples.length > 0,
    timeoutMs = 20_000,
  ): Promise<PrometheusSample[]> {
    const deadline = Date.now() + timeoutMs;
    let samples = await this.query(promql);
    while (!accept(samples)) {
      if (Date.now() > deadline) {
        const targets = await this.#targetHealth();
        throw new Error(
          `Prometheus query ${promql} returned ${JSON.stringify(samples)} after ${timeoutMs} ms. ` +
            `Targets: ${targets}\n${await this.log()}`,
        );
      }
      await delay(200);
      samples = await this.query(promql);
    }
    return samples;
  }

  /** Returns the health and last scrape error of each target, for failure messages. */
  async #targetHealth(): Promise<string> {
    try {
      const response = await fetch(`${this.url}/api/v1/targets`);
      const body = await response.json() as {
        data?: { activeTargets?: { scrapeUrl: string; health: string; lastError: string }[] };
      };
      const targets = body.data?.activeTargets ?? [];
      return JSON.stringify(targets.map(({ scrapeUrl, health, lastError }) => ({
        scrapeUrl,
        health,
        lastError,
      })));
    } catch (error) {
      return `unavailable (${error instanceof Error ? error.message : String(error)})`;
    }
  }

  /** Returns the last 30 lines of Prometheus's log. */
  async log(): Promise<string> {
    try {
      const text = await Deno.readTextFile(`${this.#directory}/prometheus.log`);
      return text.split("\n").slice(-30).join("\n");
    } catch (error) {
      return `(log unavailable: ${error instanceof Error ? error.message : String(error)})`;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch (error) {
      // Already exited; any other failure to signal it is a real error.
      if (!(error instanceof TypeError)) throw error;
    }
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), 5000);
    try {
      await this.#child.status;
    } finally {
      clearTimeout(timer);
    }
    await this.#logWritten;
    await Deno.remove(this.#directory, { recursive: true });
  }
}
