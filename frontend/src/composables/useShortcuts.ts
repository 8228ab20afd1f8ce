/**
 * Page-wide keyboard shortcuts that stay quiet while the user types in a field, a select or an
 * editable area, and ignore keys held with Ctrl, Alt or Meta.
 */
import { onBeforeUnmount, onMounted } from 'vue'

export function isTypingTarget(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false
  if (target.isContentEditable) return true
  const tag = target.tagName
  if (tag === 'TEXTAREA' || tag === 'SELECT') return true
  if (tag !== 'INPUT') return false
  const type = (target as HTMLInputElement).type
  return !['button', 'submit', 'reset', 'checkbox', 'radio', 'range', 'color'].includes(type)
}

export function useShortcuts(keys: Record<string, () => void>, enabled: () => boolean = () => true) {
  function onKey(event: KeyboardEvent): void {
    if (!enabled() || event.ctrlKey || event.altKey || event.metaKey || event.repeat) return
    if (isTypingTarget(event.target)) return
    const action = keys[event.key.toLowerCase()]
    if (action) {
      event.preventDefault()
      action()
    }
  }
  onMounted(() => window.addEventListener('keydown', onKey))
  onBeforeUnmount(() => window.removeEventListener('keydown', onKey))
}
