/**
 * Whether a value a client sent (a search term, a notification or dead-letter id, a review reason) holds a control
 * character (Unicode Cc: C0, DEL, C1). No id, merchant number or code the pipeline writes has one, and PostgreSQL
 * refuses NUL in text outright — such a value failed its query as a 500. The routes refuse it with 400 BAD_REQUEST
 * (the search form: with its other input errors) before it reaches PostgreSQL or Redis.
 */
export function hasControlCharacter(value: string): boolean {
  return /\p{Cc}/u.test(value);
}
