// How an image's units are ranked against a dataset, in words that do not claim more than the dataset allows:
// a percentile among n images moves in steps of 1/n, and an activation over the dataset's maximum is clipped
// where the map is drawn on the unit's scale (0 to that maximum).

const FEW_IMAGES = 100;  // under this, the note says how coarse the percentiles are

/** The percentile (0-1) as a percentage with no more digits than `compared` images can tell apart. */
export function percentAmong(percentile, compared) {
  return `${(percentile * 100).toFixed(compared >= 1000 ? 1 : 0)}%`;
}

/** What the percentiles are among: the fired-units answer's dataset, less the image itself when it is one. */
export function comparedWith({ images, compared }) {
  const count = compared.toLocaleString("en");
  return compared < images ? `the ${count} other images` : `${count} images`;
}

/** A sentence for datasets too small for a fine ranking, else "". */
export function coarseRankingNote(compared) {
  if (compared >= FEW_IMAGES) return "";
  return `With ${compared} images a percentile moves in steps of ${(100 / Math.max(compared, 1)).toFixed(0)}%`
    + " (a tie counts half a step): index more images for a finer ranking.";
}

/** Whether this image's maximum goes over the dataset's as printed (2 decimals): the dataset's is stored in
 *  float16, so an image of the dataset, recomputed, can pass it in the fourth digit. */
export function overDatasetMax(max, datasetMax) {
  return Number(max.toFixed(2)) > Number(datasetMax.toFixed(2));
}

/** "max 0.37 of 0.52"; where this image goes over the dataset's maximum, says so (its map is drawn clipped). */
export function maxAgainstDataset(max, datasetMax) {
  return overDatasetMax(max, datasetMax) ? `max ${max.toFixed(2)}, over the dataset's ${datasetMax.toFixed(2)}`
    : `max ${max.toFixed(2)} of ${datasetMax.toFixed(2)}`;
}
