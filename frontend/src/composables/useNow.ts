/** The time now (ms epoch), ticking every `intervalMs`, for "3 s ago" texts that stay true. */
import { getCurrentScope, onScopeDispose, ref, type Ref } from 'vue'

export function useNow(intervalMs = 1000): Ref<number> {
  const now = ref(Date.now())
  const timer = setInterval(() => (now.value = Date.now()), intervalMs)
  if (getCurrentScope()) onScopeDispose(() => clearInterval(timer))
  return now
}
