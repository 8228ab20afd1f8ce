import { createPinia } from 'pinia'
import { createApp } from 'vue'
import { client } from '@/api/client'
import { loadRuntimeConfig } from '@/config'
import { createAppRouter } from '@/router'
import App from './App.vue'
import './styles/main.scss'

async function start(): Promise<void> {
  await loadRuntimeConfig()
  const app = createApp(App)
  const pinia = createPinia()
  app.use(pinia)
  const router = createAppRouter()
  app.use(router)

  // A session that ends by itself (refused refresh) sends a guarded page to the login.
  client.onSession((user, event) => {
    const route = router.currentRoute.value
    if (user === null && event === 'expired' && route.meta.roles) {
      void router.push({ name: 'login', query: { redirect: route.fullPath, expired: '1' } })
    }
  })

  await router.isReady()
  app.mount('#app')
}

void start()
