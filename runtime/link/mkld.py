import re,sys,bisect
# parse lld map: input section lines in .text output section
mapf=sys.argv[1]; out=sys.argv[2]; traces=sys.argv[3:]
secs=[]  # (addr,size,desc)
inText=False
for l in open(mapf):
    f=l.split(None,4)
    if len(f)<5: continue
    try: a=int(f[0],16); sz=int(f[2],16)
    except: continue
    d=f[4].strip()
    if d=='.text': inText=True; continue
    if re.fullmatch(r'\.\S+',d): inText = d.startswith('.text'); continue
    if inText and ':(' in d and sz>0: secs.append((a,sz,d))
secs.sort(); addrs=[s[0] for s in secs]
order=[]; seen=set()
for t in traces:
    for h in sorted(int(l,16) for l in open(t)):
        i=bisect.bisect_right(addrs,h)-1
        if i>=0 and h<secs[i][0]+secs[i][1] and i not in seen:
            seen.add(i); order.append(i)
pats=[]; ps=set(); size=0
for i in order:
    a,sz,d=secs[i]
    m=re.match(r'(.*?):\((\.text\S*)\)$',d)
    if not m: continue
    obj,sec=m.groups()
    if re.match(r'\.text(\.\w+)?\._(ZN|R)',sec) or sec=='.text.main':
        p='*(' + re.sub(r'Cs[0-9A-Za-z]+_','Cs*_',re.sub(r'17h[0-9a-f]{16}E$','17h*E',sec)) + ')'
    else:
        mm=re.search(r'/([^/]+\.a)\(([^)]+)\)$',obj)
        if not mm: continue
        p=f'*{mm.group(1)}:{mm.group(2)}({sec})'
    if p not in ps: ps.add(p); pats.append(p); size+=sz
print(len(order),'sections',len(pats),'patterns ~',size,file=sys.stderr)
with open(out,'w') as f:
    f.write('SECTIONS {\n  .text.hot : {\n')
    for p in pats: f.write(f'    {p}\n')
    f.write('  }\n} INSERT BEFORE .text;\n')
