function h = fwind1(Hd, w1)
  % MATLAB's fwind1(Hd, win) for one 1-D window (absent from Octave's image package), from its documented
  % algorithm: Huang's circular 2-D window (the 1-D window on [-1, 1] read at each tap's radius by linear
  % interpolation, 0 beyond radius 1) times the frequency-sampled filter fsamp2(Hd).
  n = numel(w1);
  t = (-(n - 1) / 2 : (n - 1) / 2) * (2 / (n - 1));
  [t1, t2] = meshgrid(t, t);
  r = sqrt(t1 .^ 2 + t2 .^ 2);
  w = interp1(t, w1(:).', r, 'linear');
  w(r > t(end)) = 0;
  h = fftshift(ifft2(ifftshift(Hd)));  % fsamp2 for a uniformly sampled Hd
  h = rot90(h, 2) .* w;
end
