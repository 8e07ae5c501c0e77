// The terminal's last row as a live line: redrawn in place, with other lines printed above it
// without tearing it. One per process (there is one terminal). A command turns it on only when
// stdout is a terminal; the log stream (node/log.ts) prints through it while it is on, so a log
// line on stderr never lands in the middle of the live line on stdout.

/** Erase the current row and return to its start (ECMA-48 EL 2 after a carriage return). */
const CLEAR_ROW = '\r\x1b[2K'

export interface ScreenStream {
  write(text: string): unknown
  isTTY?: boolean
  columns?: number
}

export class Screen {
  #out: ScreenStream | undefined
  #err: ScreenStream | undefined
  #live = ''
  #shown = false

  /** Whether a live line is being kept (a command turned it on). */
  get active(): boolean {
    return this.#out !== undefined
  }

  /**
   * Starts keeping a live line on `out`. `err` is the stream that log lines go to when it shares
   * the terminal with `out` (both terminals): lines printed there first clear the live line.
   */
  start(out: ScreenStream, err?: ScreenStream): void {
    this.#out = out
    this.#err = err?.isTTY === true ? err : undefined
    this.#live = ''
    this.#shown = false
  }

  /** Replaces the live line (cut to the terminal's width: a wrapped line could not be redrawn in place). */
  live(text: string): void {
    if (this.#out === undefined) return
    const line = fit(text, this.#out.columns)
    if (line === this.#live && this.#shown) return
    this.#live = line
    this.#out.write(`${CLEAR_ROW}${line}`)
    this.#shown = true
  }

  /** A line on stdout above the live line (a round summary). Without a live line, a plain line. */
  print(line: string): void {
    if (this.#out === undefined) {
      process.stdout.write(`${line}\n`)
      return
    }
    this.#out.write(`${CLEAR_ROW}${line}\n`)
    this.#redraw(this.#out)
  }

  /**
   * Text for stderr (a log line, ending in a newline). When stderr shares the terminal, the live
   * line is cleared first and drawn again below it.
   */
  printError(text: string, err: ScreenStream = process.stderr): void {
    if (this.#out === undefined || this.#err === undefined) {
      err.write(text)
      return
    }
    this.#out.write(CLEAR_ROW)
    this.#err.write(text)
    this.#redraw(this.#out)
  }

  /** Stops keeping the live line; `last`, when given, stays on the terminal as a finished line. */
  stop(last?: string): void {
    const out = this.#out
    if (out === undefined) return
    out.write(last === undefined ? CLEAR_ROW : `${CLEAR_ROW}${fit(last, out.columns)}\n`)
    this.#out = undefined
    this.#err = undefined
    this.#live = ''
    this.#shown = false
  }

  #redraw(out: ScreenStream): void {
    if (this.#live.length > 0) out.write(this.#live)
  }
}

/** ANSI colour sequences (SGR): they take no columns. */
const SGR = /\x1b\[[0-9;]*m/g

export function stripColour(text: string): string {
  return text.replace(SGR, '')
}

/** Cuts a line to `columns - 1` visible characters (the last column would make some terminals wrap). */
export function fit(text: string, columns: number | undefined): string {
  if (columns === undefined || columns < 10) return text
  const plain = stripColour(text)
  // Cut lines lose their colours: rare (a narrow terminal), and never mid-sequence.
  return plain.length < columns ? text : `${plain.slice(0, columns - 2)}…`
}

/** The process's screen. */
export const screen = new Screen()
