// The floor of the replay model (issue: cost of per-user views): what a server needs at the very
// least to push a per-user view to each subscriber, in the model listenjs implements. The framework
// itself serves the subscriber's `GET` to a bare in-process request (Node's own IncomingMessage and
// ServerResponse over a dummy socket, dispatched with `server.emit('request')`, whose `write`/`end`
// only collect the body), 100 requests at a time; each answer is then sent as one frame. No version,
// no sharing, no timeout, no limits, no async context: none of what makes a replay safe.
import http from 'node:http'
import { Socket } from 'node:net'

const BATCH = 100

/** `GET url` with `headers` through `server`'s request handler; resolves with the body as a string. */
export function floorGet(server, url, headers) {
  return new Promise((resolve) => {
    const req = new http.IncomingMessage(new Socket())
    req.method = 'GET'
    req.url = url
    req.headers = headers
    const res = new http.ServerResponse(req)
    let body = ''
    res.write = (chunk) => {
      body += chunk
      return true
    }
    res.end = (chunk) => {
      if (chunk !== undefined && typeof chunk !== 'function') body += chunk
      resolve(body)
      return res
    }
    server.emit('request', req, res)
    req.push(null)
  })
}

/**
 * For every socket of `sockets` (each with the headers its upgrade carried, `ws.forward`): the
 * framework serves `GET path` as that socket's user, and `send(ws, text)` sends the data frame.
 */
export async function floorFanOut(server, sockets, path, send) {
  const all = [...sockets]
  const head = `{"type":"data","path":${JSON.stringify(path)},"json":`
  for (let i = 0; i < all.length; i += BATCH) {
    await Promise.all(
      all.slice(i, i + BATCH).map(async (ws) => {
        const body = await floorGet(server, path, ws.forward)
        send(ws, `${head}${body}}`)
      }),
    )
  }
}
