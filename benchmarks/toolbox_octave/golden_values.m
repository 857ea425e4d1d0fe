% Golden values of docs/pansharpening.md from the toolbox's own MATLAB code, run under GNU Octave:
%   octave-cli -q benchmarks/toolbox_octave/golden_values.m TOOLBOX
% with TOOLBOX the folder "02-Test-toolbox-for-traditional-and-DL(Matlab)" of liangjiandeng/DLPan-Toolbox
% (read at a34f884). Needs the Debian packages octave, octave-image, octave-signal (kaiser).
% The toolbox files run unchanged; shims/ adds what Octave lacks or does differently (blockproc with
% bs.location; MATLAB's two-output cov; fwind1). Octave's own imresize is used (image 2.14 antialiases like MATLAB).
addpath(fileparts(mfilename('fullpath')));
TB = toolbox_setup(argv());
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
% The toolbox's evaluation entry point with its border cut (flag_cut_bounds 1, dim_cut 21, no thresholding) on
% a 256x256x4 fixture; indexes_evaluation.m changes into Quality_Indices/, so run it from the toolbox folder.
[gt, f, pan] = fixture(256, 256, 4);
old = cd(TB);
[Q_index, SAM_index, ERGAS_index, sCC, Q2n_index] = indexes_evaluation(f, gt, 4, 11, 32, 1, 21, 0);
cd(old);
printf('256x256x4 RR dim_cut 21 q2n %.15f sam %.15f ergas %.15f scc %.15f q_avg %.15f\n', ...
       Q2n_index, SAM_index, ERGAS_index, sCC, Q_index);
% The toolbox's interp23tap and MTF on the 64x64x4 fixture (sums printed; tests compare them with data/).
[gt, f, pan] = fixture(64, 64, 4);
lms = interp23tap(gt(3:4:end, 3:4:end, :), 4);
blurred = MTF(gt, 'QB', 4);
h = genMTF(4, 'WV3', 8);
printf('interp23tap(gt(3:4:end,3:4:end,:)) sum %.15g corner %.15g; MTF(gt,QB) sum %.15g corner %.15g; WV3 h(21,21,1) %.15g h(1,21,8) %.15g\n', ...
       sum(lms(:)), lms(1, 1, 1), sum(blurred(:)), blurred(1, 1, 1), h(21, 21, 1), h(1, 21, 8));
% Q2n's uint16 cast and flat blocks on the 64x64x4 fixture: [0, 1] data, halves, saturation, zero / flat blocks.
printf('q2n /2047 %.15f; f+0.5 %.15f; f-0.5 %.15f; f-700 %.15f\n', q2n(gt / 2047, f / 2047, 32, 32), ...
       q2n(gt, f + 0.5, 32, 32), q2n(gt, f - 0.5, 32, 32), q2n(gt, f - 700, 32, 32));
g0 = gt; f0 = f; g0(1:32, 1:32, :) = 0; f0(1:32, 1:32, :) = 0;
[q0, map0] = q2n(g0, f0, 32, 32);
g0(1:32, 1:32, :) = 500; f0(1:32, 1:32, :) = 700;
[q1, map1] = q2n(g0, f0, 32, 32);
printf('q2n zero block %.15f (block %.15g); GT 500 / fused 700 block %.15f (block %.6g)\n', q0, map0(1, 1), q1, map1(1, 1));
% Octave's imresize (bicubic, antialiased) of a 10x13 pattern by 1/4, row by row.
[x, y] = meshgrid(0:12, 0:9);
small = imresize(mod(7 * x .^ 2 + 3 * y .^ 3 + x .* y, 31), 1 / 4);
printf('imresize 10x13 -> 3x4: %s\n', sprintf('%.15g ', small'));
