import { ref } from 'vue'

/**
 * The state of an operator's action on one row of a table (suspend, restore, requeue): which row
 * waits for the server, each row's last error, the sentence that says what the last action did,
 * and which row has its suspend form open. The users', channels' and failures' consoles share it.
 */
export function useRowActions() {
  const suspending = ref<string | null>(null)
  const busy = ref<string | null>(null)
  const rowError = ref<Record<string, string | null>>({})
  const done = ref<string | null>(null)

  /** Run `run` for `row`; on success close its form and say `said(answer)`, else show the error on the row. */
  async function act<R>(row: { id: string }, run: () => Promise<R>, said: (answer: R) => string): Promise<void> {
    busy.value = row.id
    done.value = null
    rowError.value = { ...rowError.value, [row.id]: null }
    try {
      const answer = await run()
      suspending.value = null
      done.value = said(answer)
    } catch (e) {
      rowError.value = { ...rowError.value, [row.id]: e instanceof Error ? e.message : String(e) }
    } finally {
      busy.value = null
    }
  }

  return { suspending, busy, rowError, done, act }
}
