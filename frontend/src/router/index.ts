/**
 * Routes by audience. `meta.roles` guards a route: no session → /login?redirect=<path>; a session
 * of another role → that role's home. The start-up session restore finishes before the first guard.
 */
import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import type { Role } from '@/api/types'
import { homeFor, useAuthStore } from '@/stores/auth'

declare module 'vue-router' {
  interface RouteMeta {
    roles?: Role[]
    title?: string
    /** Pages for visitors without a session (login, signup): a session goes home instead. */
    guestOnly?: boolean
  }
}

const PROVIDERS: Role[] = ['provider', 'admin']
/** Traders named by a provider may be any user; the pad shows what they may send to. */
const SENDERS: Role[] = ['provider', 'admin', 'subscriber']
const ADMINS: Role[] = ['admin']

export const routes: RouteRecordRaw[] = [
  { path: '/', name: 'home', component: () => import('@/views/public/HomeView.vue') },
  {
    path: '/login',
    name: 'login',
    component: () => import('@/views/public/LoginView.vue'),
    meta: { title: 'Log in', guestOnly: true },
  },
  {
    path: '/signup',
    name: 'signup',
    component: () => import('@/views/public/SignupView.vue'),
    meta: { title: 'Sign up', guestOnly: true },
  },
  {
    path: '/channels',
    name: 'channels',
    component: () => import('@/views/public/ChannelsView.vue'),
    meta: { title: 'Channels' },
  },
  {
    path: '/c/:channelId',
    name: 'channel',
    component: () => import('@/views/public/ChannelView.vue'),
    props: true,
    meta: { title: 'Channel' },
  },
  {
    path: '/dashboard',
    component: () => import('@/views/provider/DashboardLayout.vue'),
    meta: { roles: SENDERS },
    children: [
      {
        path: '',
        name: 'dashboard',
        component: () => import('@/views/provider/SignalPadView.vue'),
        meta: { title: 'Signal pad', roles: SENDERS },
      },
      {
        path: 'signals/:signalId',
        name: 'signal',
        component: () => import('@/views/provider/SignalView.vue'),
        props: true,
        meta: { title: 'Signal', roles: SENDERS },
      },
      {
        path: 'channels',
        name: 'my-channels',
        component: () => import('@/views/provider/ChannelsManageView.vue'),
        meta: { title: 'My channels', roles: PROVIDERS },
      },
      {
        path: 'channels/:channelId',
        name: 'my-channel',
        component: () => import('@/views/provider/ChannelEditView.vue'),
        props: true,
        meta: { title: 'Channel settings', roles: PROVIDERS },
      },
      {
        path: 'performance/:channelId?',
        name: 'performance',
        component: () => import('@/views/provider/PerformanceView.vue'),
        props: true,
        meta: { title: 'Performance', roles: SENDERS },
      },
    ],
  },
  {
    path: '/me',
    name: 'me',
    component: () => import('@/views/subscriber/MeView.vue'),
    meta: { title: 'My copying', roles: ['subscriber'] },
  },
  {
    path: '/admin',
    component: () => import('@/views/admin/AdminLayout.vue'),
    meta: { roles: ADMINS },
    children: [
      {
        path: '',
        name: 'admin',
        component: () => import('@/views/admin/PoolsView.vue'),
        meta: { title: 'Pools · Operations', roles: ADMINS },
      },
      {
        path: 'reaper',
        name: 'admin-reaper',
        component: () => import('@/views/admin/ReaperView.vue'),
        meta: { title: 'Reaper · Operations', roles: ADMINS },
      },
      {
        path: 'failures',
        name: 'admin-failures',
        component: () => import('@/views/admin/FailuresView.vue'),
        meta: { title: 'Failures · Operations', roles: ADMINS },
      },
      {
        path: 'users',
        name: 'admin-users',
        component: () => import('@/views/admin/UsersView.vue'),
        meta: { title: 'Users · Operations', roles: ADMINS },
      },
      {
        path: 'channels',
        name: 'admin-channels',
        component: () => import('@/views/admin/AdminChannelsView.vue'),
        meta: { title: 'Channels · Operations', roles: ADMINS },
      },
      {
        path: 'audit',
        name: 'admin-audit',
        component: () => import('@/views/admin/AuditView.vue'),
        meta: { title: 'Audit log · Operations', roles: ADMINS },
      },
    ],
  },
  {
    path: '/:pathMatch(.*)*',
    name: 'not-found',
    component: () => import('@/views/public/NotFoundView.vue'),
    meta: { title: 'Page not found' },
  },
]

export function createAppRouter() {
  const router = createRouter({
    history: createWebHistory(),
    routes,
    scrollBehavior(to, _from, saved) {
      if (saved) return saved
      if (to.hash) return { el: to.hash }
      return { top: 0 }
    },
  })

  router.beforeEach(async (to) => {
    const auth = useAuthStore()
    await auth.restore()
    const roles = to.meta.roles
    if (roles && !auth.loggedIn) {
      return { name: 'login', query: { redirect: to.fullPath } }
    }
    if (roles && auth.role && !roles.includes(auth.role)) {
      return homeFor(auth.role)
    }
    if (to.meta.guestOnly && auth.loggedIn) {
      const redirect = typeof to.query.redirect === 'string' ? to.query.redirect : null
      return safeRedirect(redirect) ?? homeFor(auth.role)
    }
    return true
  })

  router.afterEach((to) => {
    document.title = to.meta.title ? `${to.meta.title} · Cloud Trade Copier` : 'Cloud Trade Copier'
  })

  return router
}

/** Only a path of this app (never `//evil.example` or a full URL) is followed after login. */
export function safeRedirect(value: string | null | undefined): string | null {
  if (!value || !value.startsWith('/') || value.startsWith('//') || value.startsWith('/\\')) return null
  return value
}
