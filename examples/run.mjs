// Runs an example server from the command line: listens on PORT (or the given default) and HOST,
// prints its URL, and closes gracefully on SIGINT/SIGTERM (forcing an exit after 5 s).
import { pathToFileURL } from 'node:url'

/**
 * `{ start(port, host), close() }` for an Express or Koa app with listenjs: `start` listens, attaches
 * listenjs to the server and resolves with it; `close` closes the hub, then the server.
 */
export function lifecycle(app, live) {
  let server
  return {
    start(port = 0, host) {
      return new Promise((resolve, reject) => {
        server = app.listen(port, host)
        server.once('listening', () => resolve(server))
        server.once('error', reject)
        live.attach(server)
      })
    },
    async close() {
      await live.hub.close()
      if (server?.listening) await new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

/** True when the module at `moduleUrl` is the script Node was started with. */
export function isMain(moduleUrl) {
  return Boolean(process.argv[1]) && moduleUrl === pathToFileURL(process.argv[1]).href
}

/** Starts `{ start, close }` (see the express and koa examples) and wires the shutdown signals. */
export async function runFromCommandLine({ start, close }, { name, defaultPort }) {
  const server = await start(Number(process.env.PORT || defaultPort), process.env.HOST || 'localhost')
  console.log(`Calendar demo (${name}) on http://localhost:${server.address().port}`)
  const shutdown = () => {
    setTimeout(() => process.exit(1), 5000).unref()
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    )
  }
  process.once('SIGINT', shutdown)
  process.once('SIGTERM', shutdown)
}
