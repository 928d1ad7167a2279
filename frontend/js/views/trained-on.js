// What a model was trained on, from its card: shown wherever its predictions are, so that a model asked
// about an image unlike its data (a photo, to a model of shapes) reads as such.

import { html } from "../dom.js";

/** The card's words, or a note that it has none. */
export const trainedOnText = (model) => model.trained_on || html`<span class="muted">not stated in the model's card</span>`;

/** A line to put above predictions. */
export const trainedOn = (model) => html`<p class="trained-on small"><span class="muted">Trained on:</span> ${trainedOnText(model)}</p>`;
