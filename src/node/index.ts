/**
 * The Node binding of the hub: `createHub(options)` is a {@link Hub} whose WebSocket endpoint is
 * served by `ws` ({@link wsTransport}). The only code that knows `ws` lives in this folder.
 */
import { Hub } from '../core/hub'
import type { HubOptions } from '../core/options'
import { wsTransport } from './endpoint'

/**
 * Creates a hub. Adapters create one for you; use this directly for a plain `http` server or a
 * framework without an adapter, then `hub.attach(server)` and call `hub.track(…)` for each request.
 * @throws ListenjsError `invalid_option` when an option is wrong
 */
export function createHub(options: HubOptions = {}): Hub {
  return new Hub(options, wsTransport)
}

export { wsTransport }
