/** A configuration file is a few hundred bytes; anything this large is not one. */
export const CONFIG_FILE_MAX_BYTES = 1024 * 1024
/** Nested `extends` beyond this depth is a cycle or a mistake. */
export const CONFIG_MAX_EXTENDS_DEPTH = 8
