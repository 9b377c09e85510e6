"""Training sequence generators against exposure bias (docs/training.md).

`rollout` (one decoder run, a per-token coin between the ground truth and the model's own
token, over any model with the `rnn.decoding` step), `scheduled_sampling_loss`, `mixer_loss`
and `sequence_reinforce_loss` (REINFORCE on a sequence-level reward, with moving-average,
learned linear and self-critical baselines), `professor_forcing` (a discriminator on hidden
states), `rewards` (BLEU, edit distance, token accuracy: batched, any user function fits),
`schedules` (scheduled sampling's three decays, MIXER's Delta), `raml` (sampling from the
exponentiated payoff distribution of the Hamming and edit distances).
"""
from rnn.training import professor_forcing, raml, rewards, schedules
from rnn.training.rollout import Rollout, decoder_features, rollout, sequence_mask
from rnn.training.scheduled_sampling import scheduled_sampling_loss
from rnn.training.sequence_level import (MixerStep, chosen_log_probs, mixer_loss,
                                         sequence_reinforce_loss)

__all__ = ["MixerStep", "Rollout", "chosen_log_probs", "decoder_features", "mixer_loss",
           "professor_forcing", "raml",
           "rewards", "rollout", "scheduled_sampling_loss", "schedules", "sequence_mask",
           "sequence_reinforce_loss"]
