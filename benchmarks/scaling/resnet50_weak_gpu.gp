set terminal pngcairo size 900,600 noenhanced
set grid
set key left top
set xlabel 'ranks'
set logscale x 2
set xtics ("1" 1, "2" 2)
set xrange [0.8333333333333334:2.4]
set output "resnet50_weak_gpu_throughput.png"
set title "resnet50_weak_gpu: weak scaling throughput"
set ylabel 'images/sec'
set yrange [0:*]
plot "resnet50_weak_gpu.dat" index 0 using 1:2 with linespoints lw 2 pt 7 title "weak scaling", \
     "resnet50_weak_gpu.dat" index 0 using 1:3 with lines dt 2 lw 1 lc 1 title "ideal"
set output "resnet50_weak_gpu_efficiency.png"
set title "resnet50_weak_gpu: weak scaling efficiency"
set ylabel 'efficiency vs ideal (%)'
set yrange [0:110]
set key left bottom
plot "resnet50_weak_gpu.dat" index 0 using 1:4 with linespoints lw 2 pt 7 title "weak scaling", 100 with lines dt 2 lc 'black' title 'ideal'
