// outrider's opencode plugin: wakes the idle session when background work ends.
//
// Written by `outrider install opencode`. It names this opencode process's outrider session
// (OUTRIDER_SESSION, inherited by the outrider MCP server opencode starts), follows that
// session's notices (`outrider hook next`), and when some arrive and the opencode session is
// idle, prompts it with them (`client.session.promptAsync`); while the session is busy it
// waits for `session.idle`. Just before prompting it reads the notices again, so what a tool
// answer already carried to the model is not repeated, and it acknowledges what it sent only
// once the prompt was accepted: each notice reaches the model once.
import type { Plugin } from "@opencode-ai/plugin"

const OUTRIDER: string = __OUTRIDER__
const WAIT_SECONDS = 300

type NoticeWait = { text: string; up_to: number; superseded?: boolean }

export const OutriderPlugin: Plugin = async ({ client }) => {
  const session = (process.env.OUTRIDER_SESSION ??=
    "opencode-" + Math.random().toString(16).slice(2, 14))
  let current: string | undefined
  let busy = false
  let idle: (() => void) | undefined

  const hook = async (...args: string[]): Promise<string> => {
    const proc = Bun.spawn([OUTRIDER, "hook", ...args, "--session", session], {
      stdout: "pipe",
      stderr: "ignore",
      stdin: "ignore",
    })
    const out = await new Response(proc.stdout).text()
    if ((await proc.exited) !== 0) throw new Error(`outrider hook ${args[0]} failed`)
    return out
  }
  const next = async (seconds: number): Promise<NoticeWait> =>
    JSON.parse(await hook("next", "--timeout", String(seconds)))
  const untilIdle = () =>
    busy || current === undefined ? new Promise<void>((done) => (idle = done)) : Promise.resolve()

  const follow = async () => {
    for (;;) {
      try {
        const found = await next(WAIT_SECONDS)
        if (!found.up_to) continue
        await untilIdle()
        const fresh = await next(0) // a tool answer may have carried some meanwhile
        if (!fresh.up_to || current === undefined) continue
        await client.session.promptAsync({
          path: { id: current },
          body: { parts: [{ type: "text", text: fresh.text }] },
        })
        await hook("ack", "--up-to", String(fresh.up_to))
      } catch {
        await new Promise((r) => setTimeout(r, 1000)) // the daemon restarts: try again
      }
    }
  }
  follow()

  return {
    event: async ({ event }) => {
      const props = (event as { properties?: { sessionID?: string; info?: { id?: string } } })
        .properties
      const id = props?.sessionID ?? (event.type.startsWith("session.") ? props?.info?.id : undefined)
      if (id) current = id
      if (event.type === "session.idle") {
        busy = false
        idle?.()
        idle = undefined
      } else if (event.type === "session.status") {
        const status = (event as { properties?: { status?: { type?: string } } }).properties?.status
        busy = status?.type !== "idle"
        if (!busy) {
          idle?.()
          idle = undefined
        }
      }
    },
  }
}
