// Navigation between the pages, so that one page can open another on a feature.

/** Nav opens a page, prefilled. */
export interface Nav {
  /** features shows the feature list, filtered by query. */
  features(query?: string): void;
  /** read opens Read on a selector. */
  read(selector: string): void;
  /** watch opens Live on a feature. */
  watch(fqn: string): void;
  /** tryProgram opens the program dry run on a feature. */
  tryProgram(fqn: string): void;
}
