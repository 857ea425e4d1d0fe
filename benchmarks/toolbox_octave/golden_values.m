% Golden values of docs/pansharpening.md from the toolbox's own MATLAB code, run under GNU Octave:
%   octave-cli -q benchmarks/toolbox_octave/golden_values.m TOOLBOX
% with TOOLBOX the folder "02-Test-toolbox-for-traditional-and-DL(Matlab)" of liangjiandeng/DLPan-Toolbox
% (read at a34f884). Needs the Debian packages octave, octave-image, octave-signal (kaiser).
% The toolbox files run unchanged; shims/ adds what Octave lacks or does differently (blockproc with
% bs.location; MATLAB's two-output cov; fwind1). Octave's own imresize is used (image 2.14 antialiases like MATLAB).
pkg load image
pkg load signal
args = argv();
TB = args{end};
here = fileparts(mfilename('fullpath'));
addpath(fullfile(TB, 'Tools'));
addpath(fullfile(TB, 'Quality_Indices'));
addpath(here);
addpath(fullfile(here, 'shims'));  % last added = first on the path: the shims win over Octave's own
cases = {{64, 64, 4, 'QB'}, {64, 64, 8, 'WV3'}, {50, 70, 4, ''}};
for k = 1:numel(cases)
  [H, W, B, sensor] = cases{k}{:};
  [gt, f, pan] = fixture(H, W, B);
  printf('%dx%dx%d RR q2n %.15f sam %.15f ergas %.15f scc %.15f q_avg %.15f\n', H, W, B, ...
         q2n(gt, f, 32, 32), SAM(gt, f), ERGAS(gt, f, 4), SCC(f, gt), Q(gt, f, 2^11));
  if ~isempty(sensor)  % FR: fused = f, MS upsampled = gt, PAN = pan (the MS at LR is not used by toolbox 1.0)
    [qnr, dl, ds] = QNR(f, gt, [], pan, 4);
    [hqnr, dlk, ds2] = HQNR(f, [], gt, pan, 32, sensor, 4);
    printf('%dx%dx%d FR %s d_lambda %.15f d_s %.15f qnr %.15f d_lambda_k %.15f hqnr %.15f (d_s in HQNR %.15f)\n', ...
           H, W, B, sensor, dl, ds, qnr, dlk, hqnr, ds2);
  end
end
