/** An error in the user's data or configuration (as opposed to a bug): the CLI prints its message alone. */
export class DataError extends Error {}
