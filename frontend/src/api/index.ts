/** Every endpoint of docs/api.md the app calls, typed, through the one client. */
import { client, hadSession } from './client'
import type {
  AdminChannel,
  AdminFailure,
  AdminOverview,
  AdminUser,
  AssetsByBroker,
  AuditEntry,
  BrokerAccount,
  BrokerAccountInput,
  BrokerInfo,
  Channel,
  ChannelInput,
  ChannelPerformance,
  ChannelReadiness,
  ChannelSubscribers,
  FailedJob,
  MyPerformance,
  PublicChannel,
  PublicChannelPage,
  PublicSignal,
  ReaperAction,
  Role,
  Session,
  Signal,
  SubscribeInput,
  Subscription,
  SubscriptionPatch,
  Trade,
  User,
} from './types'

export { ApiClient, ApiError, client } from './client'
export type * from './types'

interface Items<T> {
  items: T[]
}

const id = encodeURIComponent

export const authApi = {
  async login(email: string, password: string): Promise<Session> {
    const session = await client.post<Session>('/api/auth/login', { email, password }, { auth: false })
    client.setSession(session, 'login')
    return session
  },
  async signup(input: {
    email: string
    password: string
    role: Exclude<Role, 'admin'>
    display_name?: string
  }): Promise<Session> {
    const session = await client.post<Session>('/api/auth/signup', input, { auth: false })
    client.setSession(session, 'login')
    return session
  },
  /** Restores a session from the refresh cookie; false when there is none. */
  restore(): Promise<boolean> {
    return hadSession() ? client.refresh() : Promise.resolve(false)
  },
  /** Forgets the session here first (the sockets close before the hub ends them), then has the
   * hub revoke the refresh family and clear its cookie: that needs only the cookie. */
  async logout(): Promise<void> {
    client.setSession(null, 'logout')
    await client.post<void>('/api/auth/logout', undefined, { auth: false })
  },
  me: () => client.get<User>('/api/me'),
}

export const referenceApi = {
  assets: () => client.get<AssetsByBroker>('/api/assets', undefined, { auth: false }),
  brokers: () => client.get<Items<BrokerInfo>>('/api/brokers', undefined, { auth: false }),
}

export const channelsApi = {
  mine: () => client.get<Items<Channel>>('/api/channels', { mine: 1 }),
  get: (channelId: string) => client.get<Channel>(`/api/channels/${id(channelId)}`),
  create: (input: ChannelInput) => client.post<Channel>('/api/channels', input),
  update: (channelId: string, input: Partial<ChannelInput>) =>
    client.patch<Channel>(`/api/channels/${id(channelId)}`, input),
  addTrader: (channelId: string, email: string) =>
    client.post<unknown>(`/api/channels/${id(channelId)}/traders`, { email }),
  /** `trader` is the email the owner named (or, on older hubs, the user's id). */
  removeTrader: (channelId: string, trader: string) =>
    client.delete(`/api/channels/${id(channelId)}/traders/${id(trader)}`),
  subscribers: (channelId: string) =>
    client.get<ChannelSubscribers>(`/api/channels/${id(channelId)}/subscribers`),
  performance: (channelId: string) =>
    client.get<ChannelPerformance>(`/api/channels/${id(channelId)}/performance`),
  readiness: (channelId: string) =>
    client.get<ChannelReadiness>(`/api/channels/${id(channelId)}/readiness`),
}

export const signalsApi = {
  list: (channelId: string, limit = 20) =>
    client.get<Items<Signal>>('/api/signals', { channel_id: channelId, limit }),
  get: (signalId: string) => client.get<Signal>(`/api/signals/${id(signalId)}`),
  trades: (signalId: string, limit = 10_000) =>
    client.get<Items<Trade>>('/api/trades', { signal_id: signalId, limit }),
}

export const publicApi = {
  channels: (query: { asset?: string; broker?: string; sort?: string; order?: 'asc' | 'desc' }) =>
    client.get<Items<PublicChannel> & { min_settled_signals: number }>(
      '/api/public/channels',
      query,
      { auth: false },
    ),
  channel: (channelId: string) =>
    client.get<PublicChannelPage>(`/api/public/channels/${id(channelId)}`, undefined, {
      auth: false,
    }),
  signals: (channelId: string, limit = 20) =>
    client.get<Items<PublicSignal>>(`/api/public/channels/${id(channelId)}/signals`, { limit }, {
      auth: false,
    }),
}

export const subscriberApi = {
  accounts: () => client.get<Items<BrokerAccount>>('/api/broker-accounts'),
  addAccount: (input: BrokerAccountInput) => client.post<BrokerAccount>('/api/broker-accounts', input),
  checkAccount: (accountId: string) =>
    client.post<BrokerAccount>(`/api/broker-accounts/${id(accountId)}/check`),
  removeAccount: (accountId: string, confirm = false) =>
    client.delete(`/api/broker-accounts/${id(accountId)}`, confirm ? { confirm: 1 } : undefined),
  subscriptions: () => client.get<Items<Subscription>>('/api/subscriptions'),
  subscribe: (channelId: string, input: SubscribeInput) =>
    client.post<Subscription>(`/api/channels/${id(channelId)}/subscribe`, input),
  updateSubscription: (subscriptionId: string, patch: SubscriptionPatch) =>
    client.patch<Subscription>(`/api/subscriptions/${id(subscriptionId)}`, patch),
  leave: (subscriptionId: string) => client.delete(`/api/subscriptions/${id(subscriptionId)}`),
  trades: (limit = 200) => client.get<Items<Trade>>('/api/trades', { mine: 1, limit }),
  performance: () => client.get<MyPerformance>('/api/me/performance'),
}

/** The operators' console: admin role only (the router keeps everyone else away). */
export const adminApi = {
  overview: () => client.get<AdminOverview>('/api/admin/overview'),
  failures: (limit = 100) => client.get<Items<AdminFailure>>('/api/admin/failures', { limit }),
  reaper: (limit = 100) => client.get<Items<ReaperAction>>('/api/admin/reaper', { limit }),
  failedJobs: () => client.get<Items<FailedJob>>('/api/admin/jobs/failed'),
  requeue: (jobId: string) =>
    client.post<{ id: string; broker: string; status: 'requeued' }>(
      `/api/admin/jobs/${id(jobId)}/requeue`,
    ),
  users: (q: string, limit = 50) => client.get<Items<AdminUser>>('/api/admin/users', { q, limit }),
  suspendUser: (userId: string, reason: string) =>
    client.post<AdminUser>(`/api/admin/users/${id(userId)}/suspend`, { reason }),
  restoreUser: (userId: string) => client.post<AdminUser>(`/api/admin/users/${id(userId)}/unsuspend`),
  channels: (q: string, limit = 50) =>
    client.get<Items<AdminChannel>>('/api/admin/channels', { q, limit }),
  suspendChannel: (channelId: string, reason: string) =>
    client.post<AdminChannel>(`/api/admin/channels/${id(channelId)}/suspend`, { reason }),
  restoreChannel: (channelId: string) =>
    client.post<AdminChannel>(`/api/admin/channels/${id(channelId)}/unsuspend`),
  audit: (limit = 100) => client.get<Items<AuditEntry>>('/api/admin/audit', { limit }),
}
