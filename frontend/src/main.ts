import { createPinia } from 'pinia'
import { createApp } from 'vue'
import { client } from '@/api/client'
import { loadRuntimeConfig } from '@/config'
import { createAppRouter } from '@/router'
import { useAdminStore } from '@/stores/admin'
import { useChannelsStore } from '@/stores/channels'
import { useReadinessStore } from '@/stores/readiness'
import { useSignalsStore } from '@/stores/signals'
import { useSubscriberStore } from '@/stores/subscriber'
import App from './App.vue'
import './styles/main.scss'

async function start(): Promise<void> {
  await loadRuntimeConfig()
  const app = createApp(App)
  const pinia = createPinia()
  app.use(pinia)
  const router = createAppRouter()
  app.use(router)

  // A session that ends by itself (refused refresh, suspended account) sends a guarded page to
  // the login, which says why.
  client.onSession((user, event) => {
    if (user !== null) return
    // nothing of the last session stays in memory for the next one in this tab
    for (const store of [useAdminStore, useChannelsStore, useReadinessStore, useSignalsStore, useSubscriberStore]) {
      store(pinia).reset()
    }
    const route = router.currentRoute.value
    if (!route.meta.roles) return
    if (event === 'expired') {
      void router.push({ name: 'login', query: { redirect: route.fullPath, expired: '1' } })
    } else if (event === 'suspended') {
      void router.push({ name: 'login', query: { suspended: '1' } })
    }
  })

  await router.isReady()
  app.mount('#app')
}

void start()
