/**
 * Wires the namespace sockets to the stores, once: `/provider` events into the feed store,
 * `/subscriber` events into the subscriber store. Views call `useProviderLive()` or
 * `useSubscriberLive()` to make sure the socket is open and to read its state.
 */
import type { ExecutionEvent, SettlementEvent } from '@/api/types'
import { FrameBatcher } from '@/lib/frameBatcher'
import { useFeedStore } from '@/stores/feed'
import { useSubscriberStore } from '@/stores/subscriber'
import { providerConnection, subscriberConnection } from './sockets'

let providerWired = false
let subscriberWired = false

export function useProviderLive() {
  const feed = useFeedStore()
  if (!providerWired) {
    providerWired = true
    providerConnection.on('execution', (data: ExecutionEvent | ExecutionEvent[]) =>
      feed.ingestExecutions(data),
    )
    providerConnection.on('settlement', (data: SettlementEvent | SettlementEvent[]) =>
      feed.ingestSettlements(data),
    )
  }
  providerConnection.start()
  return { state: providerConnection.state, error: providerConnection.error, connection: providerConnection }
}

export function useSubscriberLive() {
  const store = useSubscriberStore()
  if (!subscriberWired) {
    subscriberWired = true
    const executions = new FrameBatcher<ExecutionEvent>((items) => store.ingestExecutions(items))
    const settlements = new FrameBatcher<SettlementEvent>((items) => store.ingestSettlements(items))
    subscriberConnection.on('execution', (data: ExecutionEvent | ExecutionEvent[]) =>
      executions.push(data),
    )
    subscriberConnection.on('settlement', (data: SettlementEvent | SettlementEvent[]) =>
      settlements.push(data),
    )
    // a reconnect may have missed events: read the stored records again
    subscriberConnection.on('connect', () => {
      if (store.loaded) void store.load().catch(() => undefined)
    })
  }
  subscriberConnection.start()
  return { state: subscriberConnection.state, error: subscriberConnection.error }
}
