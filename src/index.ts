/**
 * listenjs: live REST resources. `createHub` for any `http` server; the adapters
 * (`listenjs/fastify`, `listenjs/express`, `listenjs/koa`) create and wire a hub for you.
 */
export { Hub } from './core/hub'
export { createHub } from './node'
export type {
  AttachableServer,
  ConnectEvent,
  DisconnectEvent,
  HubEvents,
  HubStats,
  PushEvent,
  ReplayEvent,
  ReplayOutcome,
  RouteMatch,
  RouteOptions,
  SubscriptionEvent,
} from './core/types'
export type { HubSocket, Opened, SocketEvents, Transport, TransportFactory } from './core/socket'
export { DEFAULTS, POLICY, PUBLIC, silentLogger } from './core/options'
export type { TrustProxy } from './core/proxy'
export type {
  Authorize,
  HeartbeatOptions,
  HubOptions,
  Identify,
  Limits,
  Logger,
  OriginCheck,
  PathRule,
  ResolvedOptions,
} from './core/options'
export { ListenjsError } from './core/errors'
export type { ListenjsErrorCode } from './core/errors'
export { CloseCode, SUBPROTOCOL, retryPolicy } from './core/protocol'
export type { ClientMessage, ErrorCode, ServerMessage } from './core/protocol'
export { memoryBackplane } from './core/backplane'
export type {
  Backplane,
  BackplaneCounters,
  BackplaneMessage,
  BackplaneStatus,
  ChangeMessage,
  PayloadMessage,
  PublishedMessage,
  ResyncMessage,
} from './core/backplane'
export { isReplayRequest as isReplay } from './core/replay'
export type { ChangeCause, PushReport, ReplayTrace, Telemetry } from './core/telemetry'
export type { UpgradeRequest } from './core/replay'
