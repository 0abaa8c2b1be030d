/**
 * The path of ENTRY's bundle in .build/ (ENTRY relative to the checkout), built when none is up
 * to date; null when there is none and .build/ cannot be written: then run ENTRY through tsx.
 */
export function bundled(entry: string): Promise<string | null>;
