/** Reference data every page may need: tradable assets and brokers, fetched once. */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { referenceApi } from '@/api'
import type { AssetsByBroker, BrokerInfo } from '@/api/types'

export const useReferenceStore = defineStore('reference', () => {
  const assets = ref<AssetsByBroker>({})
  const brokers = ref<BrokerInfo[]>([])
  const loaded = ref(false)
  let loading: Promise<void> | null = null

  const allAssets = computed(() => [...new Set(Object.values(assets.value).flat())].sort())
  const brokerNames = computed(() =>
    brokers.value.length ? brokers.value.map((b) => b.name) : Object.keys(assets.value),
  )

  function load(): Promise<void> {
    loading ??= Promise.all([
      referenceApi.assets().then((a) => (assets.value = a)),
      // /api/brokers is newer than /api/assets: without it the pages fall back to the assets
      referenceApi
        .brokers()
        .then((b) => (brokers.value = b.items))
        .catch(() => undefined),
    ])
      .then(() => {
        loaded.value = true
      })
      .catch((error: unknown) => {
        loading = null
        throw error
      })
    return loading
  }

  function broker(name: string): BrokerInfo | undefined {
    return brokers.value.find((b) => b.name === name)
  }

  return { assets, brokers, loaded, allAssets, brokerNames, load, broker }
})
